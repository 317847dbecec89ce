//! The host pass: one streaming read of a profile's spool into `trace_view.json`'s host tracks (threads,
//! ranges, marks, the steps), keeping only the open ranges of each thread, the steps and the name table,
//! never the events. Every id and length read from the spool is bounded before it sizes anything.

use super::*;

/// Why a host range was closed by the exporter instead of by its END record; written as the slice's
/// `"npuprof"` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Note {
    /// Closed by its END record: no note.
    None,
    /// Its thread exited with the range open.
    ThreadExited,
    /// Its END was dropped (ring full): closed where a later BEGIN or END at its depth or above shows it ended.
    EndLost,
    /// Still open when the profile stopped.
    ClosedAtStop,
}

impl Note {
    fn text(self) -> Option<&'static str> {
        match self {
            Note::None => None,
            Note::ThreadExited => Some("thread exited"),
            Note::EndLost => Some("end lost (buffer full)"),
            Note::ClosedAtStop => Some("closed at stop"),
        }
    }
}

struct Open {
    depth: u32,
    name: u32,
    tick: u64,
    stack: Vec<u64>,
}

#[derive(Default)]
struct ThreadState {
    epoch: u32,
    tid: u32,
    open: Vec<Open>,
    last_tick: u64,
    last_was_begin: bool,
    /// The thread's latest step: (index in `HostPass::steps`, tick).
    step: Option<(usize, u64)>,
    /// The tick of the thread's latest range end (a range ending where the next step begins would overlap the
    /// step's slice, drawn 1 ns short).
    last_end: u64,
}

/// One `npuprof_step`: number, tick, tokens, thread, and whether a range of that thread crosses one of its
/// boundaries (then it is drawn on the `Steps` lane instead of the thread, which must stay properly nested).
struct Step {
    k: u64,
    tick: u64,
    tokens: u64,
    tid: u32,
    crossed: bool,
}

/// The tid of the `Steps` lane (no OS thread id is this large).
pub(super) const STEPS_TID: u32 = 0x7fff_fffe;

/// A lane for a ring whose thread id is unknown or taken (below `STEPS_TID`, above any OS thread id).
fn synthetic_tid(ring: u32) -> u32 {
    0x7ffe_0000 + (ring & 0xffff)
}

/// The streaming pass over the host spool.
pub(super) struct HostPass {
    pid: u32,
    conv: crate::record::clock::Conversion,
    start_tick: u64,
    stop_tick: u64,
    /// JSON string literal per name id (ids up to `names::MAX_NAMES`: a larger one is no name of ours).
    names: Vec<Option<String>>,
    threads: HashMap<u32, ThreadState>,
    /// Per thread id: how many rings' current owner has it (so a reused tid is found without a scan).
    tid_owners: HashMap<u32, u32>,
    /// Lane tids already named.
    announced: std::collections::HashSet<u32>,
    /// Per thread id: the last tick drawn by a previous owner of that lane (an exited thread).
    tid_floor: HashMap<u32, u64>,
    /// (tid, thread name) in order of appearance.
    pub(super) thread_meta: Vec<(u32, Vec<u8>)>,
    steps: Vec<Step>,
    symbols: HashMap<u64, String>,
    args: String,
    pub(super) lost_ends: u64,
    pub(super) lost_begins: u64,
    pub(super) closed_at_stop: u64,
    pub(super) unknown: u64,
    /// Records whose event the trace's disk budget left out.
    pub(super) trace_cut: u64,
    /// STACK records that follow no kept BEGIN.
    pub(super) stray_stacks: u64,
    pub(super) damage: Option<String>,
    /// The device tasks' host launches: each framework op drawn gives its start to the launches it encloses.
    pub(super) launches: crate::device::Launches,
    /// The result's database, when written: it gets the host ranges and marks as they are read.
    pub(super) db: Option<super::db::Db>,
}

impl HostPass {
    pub(super) fn new(
        pid: u32,
        conv: crate::record::clock::Conversion,
        start_tick: u64,
        stop_tick: u64,
    ) -> Self {
        HostPass {
            pid,
            conv,
            start_tick,
            stop_tick,
            names: Vec::new(),
            threads: HashMap::new(),
            tid_owners: HashMap::new(),
            announced: std::collections::HashSet::new(),
            tid_floor: HashMap::new(),
            thread_meta: Vec::new(),
            steps: Vec::new(),
            symbols: HashMap::new(),
            args: String::new(),
            lost_ends: 0,
            lost_begins: 0,
            closed_at_stop: 0,
            unknown: 0,
            trace_cut: 0,
            stray_stacks: 0,
            damage: None,
            launches: Default::default(),
            db: None,
        }
    }

    /// Reads `FRAMEWORK/npuprof.spool` through the directory's handle (never a name someone swapped).
    pub(super) fn read_spool(&mut self, tw: &mut Trace, framework: &layout::Place) -> Result<()> {
        let (f, st) = framework.open_file(layout::SPOOL_NAME)?;
        let mut rd = spool::Reader::new(std::io::BufReader::with_capacity(256 << 10, f), st.size);
        self.read_frames(tw, &mut rd, &framework.shown(layout::SPOOL_NAME))
    }

    /// Every id and length read here is bounded before it sizes anything: a spool may be damaged or
    /// crafted (the reader bounds frame lengths by the file and `spool::MAX_FRAME`; name ids are bounded
    /// by `names::MAX_NAMES`, ring and thread ids only key maps whose size is bounded by the frame count).
    pub(super) fn read_frames<R: std::io::Read>(
        &mut self,
        tw: &mut Trace,
        rd: &mut spool::Reader<R>,
        shown: &std::path::Path,
    ) -> Result<()> {
        tw.process(self.pid, "MindSpore", "CPU", 1)?;
        while let Some(f) = rd.next_frame() {
            match f {
                Frame::Name(id, n) => {
                    let i = id as usize;
                    // An id no name table hands out: not a name of this profile (its records show
                    // "[unknown name #id]").
                    if id == 0 || i > names::MAX_NAMES {
                        continue;
                    }
                    if self.names.len() <= i {
                        self.names.resize(i + 1, None);
                    }
                    self.names[i] = Some(json::string(&n));
                    if let Some(db) = &mut self.db {
                        db.host_name(id, &n);
                    }
                }
                Frame::Thread {
                    ring,
                    epoch,
                    tid,
                    name,
                } => {
                    let st = self.threads.entry(ring).or_default();
                    if st.epoch != epoch || st.tid == 0 {
                        // The ring changed owner: the previous thread exited; close what it left open.
                        let last = st.last_tick;
                        let mut old = std::mem::take(st);
                        self.release_tid(old.tid);
                        self.close_all(tw, &mut old, last, Note::ThreadExited)?;
                        let f = self.tid_floor.entry(old.tid).or_default();
                        *f = (*f).max(last);
                        // A thread id another ring has (an exited thread's id reused by a new thread, whose
                        // ranges may still be open until stop): a lane of its own, so the slices of two
                        // threads never overlap on one track.
                        let busy = self.tid_owners.get(&tid).is_some_and(|&n| n > 0);
                        let (tid, name) = if busy || tid == 0 {
                            let mut n = format!("Thread {tid} (ring {ring}) ").into_bytes();
                            n.extend_from_slice(&name);
                            (synthetic_tid(ring), n)
                        } else {
                            (tid, name)
                        };
                        // The new thread's records cannot precede what the lane's previous owner drew.
                        let floor = self.tid_floor.get(&tid).copied().unwrap_or(0);
                        let st = self.threads.entry(ring).or_default();
                        st.epoch = epoch;
                        st.tid = tid;
                        st.last_tick = floor;
                        *self.tid_owners.entry(tid).or_default() += 1;
                        self.announce(tid, name);
                    }
                }
                Frame::Records { ring, records, .. } => {
                    let mut st = self.threads.remove(&ring).unwrap_or_default();
                    if st.tid == 0 {
                        // Records of a ring never announced (a damaged spool): a lane of their own.
                        st.tid = synthetic_tid(ring);
                        *self.tid_owners.entry(st.tid).or_default() += 1;
                        self.announce(st.tid, format!("ring {ring} (thread unknown)").into_bytes());
                    }
                    for r in &records {
                        self.record(tw, &mut st, r)?;
                    }
                    self.threads.insert(ring, st);
                }
                Frame::Start(_) | Frame::Stop(_) | Frame::Counters(_) | Frame::Unknown(_) => {}
            }
        }
        if let Some(d) = &rd.damage {
            let msg = format!("{d:?}");
            log::warn!(
                "spool {} is damaged ({msg}); everything before the damage is exported",
                shown.display()
            );
            self.damage = Some(msg);
        }
        Ok(())
    }

    /// Names the lane `tid` (the first name given wins).
    fn announce(&mut self, tid: u32, name: Vec<u8>) {
        if self.announced.insert(tid) {
            self.thread_meta.push((tid, name));
        }
    }

    /// A ring's owner `tid` is gone (its ring changed owner).
    fn release_tid(&mut self, tid: u32) {
        if let Some(n) = self.tid_owners.get_mut(&tid) {
            *n = n.saturating_sub(1);
        }
    }

    fn name(&self, id: u32) -> String {
        if let Some(Some(n)) = self.names.get(id as usize) {
            return n.clone();
        }
        match names::get(id) {
            Some(n) => json::string(n),
            None => json::string(format!("[unknown name #{id}]").as_bytes()),
        }
    }

    /// Draws the closed range `o` of the thread `st` (on `st.tid`).
    fn emit_range(
        &mut self,
        tw: &mut Trace,
        st: &ThreadState,
        o: &Open,
        end: u64,
        note: Note,
    ) -> Result<()> {
        let tid = st.tid;
        let st_step = st.step.map(|(_, t)| t);
        let begin = o.tick.clamp(self.start_tick, self.stop_tick);
        let end = end.clamp(begin, self.stop_tick.max(begin));
        self.args.clear();
        if !o.stack.is_empty() {
            self.args.push_str("\"Call stack\":\"");
            for (i, &a) in o.stack.iter().enumerate() {
                if i > 0 {
                    self.args.push(';');
                }
                let sym = self
                    .symbols
                    .entry(a)
                    .or_insert_with(|| symbolize(a))
                    .clone();
                json::escape_into(&mut self.args, sym.as_bytes());
            }
            self.args.push('"');
        }
        if let Some(text) = note.text() {
            if !self.args.is_empty() {
                self.args.push(',');
            }
            let _ = write!(self.args, "\"npuprof\":\"{text}\"");
        }
        let name = self.name(o.name);
        let args = std::mem::take(&mut self.args);
        // A range open across its thread's latest step start encloses that step: as a framework op
        // (`cpu_op`) it would make msprof-analyze compare's tree builder file the step (and its ops) under it,
        // so that the step is no top-level node; it is drawn as a user annotation instead.
        let cat = match st_step {
            Some(t) if o.tick < t => "user_annotation",
            _ => "cpu_op",
        };
        // Durations are differences of converted end points, so nesting and adjacency survive the
        // conversion exactly (no independent rounding of begin and length).
        let begin_ns = self.conv.to_ns(begin);
        if let Some(db) = &mut self.db {
            db.host_range(tid, o.name, begin_ns, self.conv.to_ns(end).max(begin_ns));
        }
        // The records this slice stands for: its BEGIN, its stack frames and, unless it was closed for
        // want of one (note set), its END.
        let records = 1 + o.stack.len() as u64 + matches!(note, Note::None) as u64;
        let cut_before = tw.cut_events();
        let end_ns = self.conv.to_ns(end);
        if cat == "cpu_op" && !self.launches.is_empty() {
            self.launches.enclose(tid, begin_ns, end_ns);
        }
        if let (Some(db), "cpu_op") = (&mut self.db, cat) {
            db.framework_op(tid, o.name, begin_ns, end_ns.max(begin_ns));
        }
        // Drawn later and beginning at this nanosecond: the enclosing range (still open), or the thread's step
        // (drawn at the end) when this range is in it.
        let at_begin =
            |tick: u64| self.conv.to_ns(tick.clamp(self.start_tick, self.stop_tick)) == begin_ns;
        let encloser_follows = st.open.last().is_some_and(|p| at_begin(p.tick))
            || st_step.is_some_and(|t| t <= o.tick && at_begin(t));
        let r = tw.complete(
            self.pid,
            tid,
            &name,
            begin_ns,
            end_ns.saturating_sub(begin_ns),
            cat,
            &args,
            encloser_follows,
        );
        self.args = args;
        self.count_cut(tw, cut_before, records);
        r
    }

    /// Counts `records` as cut from the trace if the event offered since `cut_before` was left out.
    fn count_cut(&mut self, tw: &Trace, cut_before: u64, records: u64) {
        if tw.cut_events() > cut_before {
            self.trace_cut += records;
        }
    }

    fn close_all(
        &mut self,
        tw: &mut Trace,
        st: &mut ThreadState,
        at: u64,
        note: Note,
    ) -> Result<()> {
        while let Some(o) = st.open.pop() {
            if matches!(note, Note::ClosedAtStop) {
                self.closed_at_stop += 1;
            } else {
                self.ended(st, &o, at);
            }
            self.emit_range(tw, st, &o, at, note)?;
        }
        Ok(())
    }

    /// A range of `st` ends `at`: if it began before the thread's latest step, it crosses that step's start.
    fn ended(&mut self, st: &mut ThreadState, o: &Open, at: u64) {
        st.last_end = st.last_end.max(at);
        if let Some((i, t)) = st.step {
            if o.tick < t {
                if let Some(s) = self.steps.get_mut(i) {
                    s.crossed = true;
                }
            }
        }
    }

    fn record(&mut self, tw: &mut Trace, st: &mut ThreadState, r: &Record) -> Result<()> {
        let p = r.payload();
        let k = r.kind();
        // A thread's records are in tick order; one that is not (a corrupt spool, a clock going backwards)
        // is moved to the thread's latest tick, so slices always nest.
        let r = &Record {
            ts: r.ts.max(st.last_tick),
            meta: r.meta,
        };
        st.last_tick = r.ts;
        let was_begin = std::mem::replace(&mut st.last_was_begin, false);
        match k {
            kind::BEGIN => {
                let depth = (p >> 32) as u32;
                // Ranges at this depth or deeper are still open: their END records were lost.
                while st.open.last().is_some_and(|o| o.depth >= depth) {
                    let o = st.open.pop().expect("checked");
                    self.lost_ends += 1;
                    self.ended(st, &o, r.ts);
                    self.emit_range(tw, st, &o, r.ts, Note::EndLost)?;
                }
                st.open.push(Open {
                    depth,
                    name: p as u32,
                    tick: r.ts,
                    stack: Vec::new(),
                });
                st.last_was_begin = true;
            }
            kind::END => {
                let depth = (p >> 32) as u32;
                while st.open.last().is_some_and(|o| o.depth > depth) {
                    let o = st.open.pop().expect("checked");
                    self.lost_ends += 1;
                    self.ended(st, &o, r.ts);
                    self.emit_range(tw, st, &o, r.ts, Note::EndLost)?;
                }
                if st.open.last().is_some_and(|o| o.depth == depth) {
                    let o = st.open.pop().expect("checked");
                    self.ended(st, &o, r.ts);
                    self.emit_range(tw, st, &o, r.ts, Note::None)?;
                } else {
                    self.lost_begins += 1;
                }
            }
            kind::MARK => {
                let name = self.name(p as u32);
                if let Some(db) = &mut self.db {
                    db.host_mark(st.tid, p as u32, self.conv.to_ns(r.ts));
                }
                let cut_before = tw.cut_events();
                tw.instant(self.pid, st.tid, &name, self.conv.to_ns(r.ts), "mark")?;
                self.count_cut(tw, cut_before, 1);
            }
            kind::STEP => {
                // A range opened during the previous step and still open crosses that step's end; so does one
                // that ended where this step begins (at the same ns), since that step is drawn 1 ns short.
                if let Some((i, t)) = st.step {
                    let touches =
                        st.last_end >= t && self.conv.to_ns(st.last_end) >= self.conv.to_ns(r.ts);
                    if touches || st.open.iter().any(|o| o.tick >= t) {
                        if let Some(s) = self.steps.get_mut(i) {
                            s.crossed = true;
                        }
                    }
                }
                st.step = Some((self.steps.len(), r.ts));
                self.steps.push(Step {
                    k: p >> 32,
                    tick: r.ts,
                    tokens: p & 0xffff_ffff,
                    tid: st.tid,
                    crossed: false,
                });
            }
            kind::STACK => match st.open.last_mut() {
                Some(o) if was_begin => {
                    o.stack.push(p);
                    st.last_was_begin = true;
                }
                _ => self.stray_stacks += 1,
            },
            _ => self.unknown += 1,
        }
        Ok(())
    }

    /// Closes what is open at stop, writes the steps and the thread names; returns the step spans.
    pub(super) fn finish(&mut self, tw: &mut Trace, stop_tick: u64) -> Result<Vec<StepSpan>> {
        let rings: Vec<u32> = self.threads.keys().copied().collect();
        for ring in rings {
            let mut st = self.threads.remove(&ring).unwrap_or_default();
            self.close_all(tw, &mut st, stop_tick, Note::ClosedAtStop)?;
        }
        // Stable, by tick only: steps at one tick stay in the order they were made (the order the crossing
        // checks above assumed).
        self.steps.sort_by_key(|s| s.tick);
        let mut spans = Vec::with_capacity(self.steps.len());
        // A step ends where the next one begins: with steps from several threads, its end is another
        // thread's moment and its ranges cannot be checked against it; all steps then go to the lane.
        let several = self.steps.iter().any(|s| s.tid != self.steps[0].tid);
        // Steps at one nanosecond are drawn 1 ns apart (below): a later one then begins after the ranges its
        // thread opened at that nanosecond and would cut through them, so they go to the lane too.
        let conv = &self.conv;
        let one_ns = self
            .steps
            .windows(2)
            .any(|w| conv.to_ns(w[0].tick) == conv.to_ns(w[1].tick));
        let several = several || one_ns;
        if several || self.steps.iter().any(|s| s.crossed) {
            tw.thread(self.pid, STEPS_TID, b"Steps", 0)?;
        }
        // Where the next drawn step may begin: after the previous one's drawn end (steps at one nanosecond,
        // from several threads, are drawn 1 ns apart; their spans for the CSVs are not moved).
        let mut min_start = 0u64;
        for i in 0..self.steps.len() {
            let Step {
                k,
                tick,
                tokens,
                tid,
                crossed,
            } = self.steps[i];
            let tid = if crossed || several { STEPS_TID } else { tid };
            let end = self
                .steps
                .get(i + 1)
                .map_or(stop_tick, |s| s.tick.min(stop_tick))
                .max(tick);
            let start_ns = self.conv.to_ns(tick);
            let dur = self.conv.to_ns(end).saturating_sub(start_ns);
            // The step's slice (a framework op, `cpu_op`, as torch_npu and MindSpore draw `ProfilerStep#N`)
            // ends 1 ns before the next step begins: msprof-analyze compare's tree builder nests an event that
            // starts exactly where the previous one ends inside it. The step's span for the CSVs stays [its
            // start, the next step's start).
            let end_ns = start_ns.saturating_add(dur);
            let drawn_start = start_ns.max(min_start);
            let drawn_end = if i + 1 < self.steps.len() {
                end_ns.saturating_sub(1)
            } else {
                end_ns
            }
            .max(drawn_start);
            min_start = drawn_end.saturating_add(1);
            let name = json::string(format!("ProfilerStep#{k}").as_bytes());
            let cut_before = tw.cut_events();
            tw.complete(
                self.pid,
                tid,
                &name,
                drawn_start,
                drawn_end - drawn_start,
                "cpu_op",
                &format!("\"num_scheduled_tokens\":{tokens}"),
                false,
            )?;
            self.count_cut(tw, cut_before, 1);
            spans.push(StepSpan {
                step: k,
                start_ns,
                end_ns: start_ns + dur,
            });
        }
        let meta = std::mem::take(&mut self.thread_meta);
        for (i, (tid, name)) in meta.iter().enumerate() {
            let mut label = format!("Thread {tid}").into_bytes();
            if !name.is_empty() {
                label.extend_from_slice(b" (");
                label.extend_from_slice(name);
                label.push(b')');
            }
            tw.thread(self.pid, *tid, &label, i as u32)?;
        }
        self.thread_meta = meta;
        Ok(spans)
    }
}

/// "module!symbol+0xoff" for a return address (dladdr: exported symbols only), else the address.
fn symbolize(addr: u64) -> String {
    // Look up the call instruction, not the return address: after a noreturn call at the end of a function
    // the return address already belongs to the next function.
    let pc = addr.wrapping_sub(1);
    // SAFETY: an all-zero Dl_info is a valid value (null pointers, zero addresses).
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables; `info` is a valid out-parameter. The strings it returns
    // belong to the loaded module; they are copied at once below (a concurrent dlclose of that very module
    // is the one case this cannot rule out, and npuprof itself is never unloaded).
    let ok = unsafe { libc::dladdr(pc as *const libc::c_void, &mut info) } != 0;
    if !ok {
        return format!("{addr:#x}");
    }
    let cstr = |p: *const libc::c_char| {
        if p.is_null() {
            None
        } else {
            // SAFETY: dladdr returns NUL-terminated strings owned by the loader.
            Some(
                unsafe { std::ffi::CStr::from_ptr(p) }
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    };
    let module = cstr(info.dli_fname)
        .map(|m| m.rsplit('/').next().unwrap_or(&m).to_string())
        .unwrap_or_default();
    match cstr(info.dli_sname) {
        Some(s) => format!("{module}!{s}+{:#x}", pc.wrapping_sub(info.dli_saddr as u64)),
        None => format!("{module}+{:#x}", pc.wrapping_sub(info.dli_fbase as u64)),
    }
}

#[cfg(test)]
mod tests;
