//! The host pass over hand-built spools.

use super::*;
use crate::record::clock::Conversion;
use crate::record::Record;

fn rec(ts: u64, k: u8, depth: u64, name: u64) -> Record {
    Record::new(ts, k, (depth << 32) | name)
}

/// Builds a spool from frames and runs the host pass over it; returns the trace events.
fn host_pass(
    frames: impl FnOnce(&mut spool::Writer),
) -> (Vec<serde_json::Value>, HostPass, Vec<StepSpan>) {
    let d = tempfile::tempdir().unwrap();
    let sp = d.path().join(layout::SPOOL_NAME);
    let mut w = spool::Writer::new(std::fs::File::create(&sp).unwrap()).unwrap();
    w.name(5, b"outer").unwrap();
    w.name(6, b"inner").unwrap();
    frames(&mut w);
    w.finish().unwrap();
    let conv = Conversion {
        anchor_tick: 0,
        anchor_ns: 1_000_000,
        ticks_per: 1,
        ns_per: 1,
    };
    let mut hp = HostPass::new(42, conv, 0, 10_000);
    let tv = d.path().join(layout::TRACE_VIEW);
    let at = layout::Place::open(d.path()).unwrap();
    // Both formats: every host-pass test also checks that the Perfetto trace has the JSON's slices, nested
    // the same way.
    let mut tw = Trace::create(&at, crate::config::TraceFormat::Both, false, u64::MAX, 42).unwrap();
    hp.read_spool(&mut tw, &at).unwrap();
    let steps = hp.finish(&mut tw, 10_000).unwrap();
    tw.finish().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&tv).unwrap()).unwrap();
    let events = v.as_array().unwrap().clone();
    crate::export::perfetto::tests::same_as_json(&d.path().join(layout::TRACE_PFTRACE), &events);
    (events, hp, steps)
}

/// The host pass over records of one thread (ring 0, tid 7, "main").
fn on_main(records: &[Record]) -> (Vec<serde_json::Value>, HostPass, Vec<StepSpan>) {
    host_pass(|w| {
        w.thread(0, 1, 7, b"main").unwrap();
        w.records(0, 1, records).unwrap();
    })
}

fn x<'a>(t: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    t.iter()
        .filter(|e| e["ph"] == "X" && e["name"] == name)
        .collect()
}

#[test]
fn pairs_ranges_by_depth_and_repairs_lost_records() {
    let (t, hp, _) = host_pass(|w| {
        w.thread(0, 1, 100, b"main").unwrap();
        w.records(
            0,
            1,
            &[
                rec(10, kind::BEGIN, 0, 5),
                rec(20, kind::BEGIN, 1, 6),
                rec(30, kind::END, 1, 0),
                // inner's END lost: the next BEGIN at depth 1 closes it
                rec(40, kind::BEGIN, 1, 6),
                rec(50, kind::BEGIN, 1, 6),
                rec(60, kind::END, 1, 0),
                rec(70, kind::END, 0, 0),
                // an END whose BEGIN was lost
                rec(80, kind::END, 0, 0),
                rec(90, kind::MARK, 0, 5),
                rec(95, 0x7f, 0, 0),
                // left open: closed at stop
                rec(100, kind::BEGIN, 0, 6),
            ],
        )
        .unwrap();
    });
    let outer = x(&t, "outer");
    assert_eq!(outer.len(), 1);
    assert_eq!(
        (outer[0]["ts"].as_str(), outer[0]["dur"].as_str()),
        (Some("1000.010"), Some("0.060"))
    );
    let inner = x(&t, "inner");
    assert_eq!(inner.len(), 4);
    assert_eq!(
        inner
            .iter()
            .filter(|e| e["args"]["npuprof"] == "end lost (buffer full)")
            .count(),
        1
    );
    assert_eq!(
        inner
            .iter()
            .filter(|e| e["args"]["npuprof"] == "closed at stop")
            .count(),
        1
    );
    assert_eq!(
        (hp.lost_ends, hp.lost_begins, hp.closed_at_stop, hp.unknown),
        (1, 1, 1, 1)
    );
    assert_eq!(t.iter().filter(|e| e["ph"] == "i").count(), 1);
}

#[test]
fn a_reused_ring_closes_the_previous_owners_ranges_at_its_last_event() {
    let (t, _, _) = host_pass(|w| {
        w.thread(3, 1, 100, b"a").unwrap();
        w.records(
            3,
            1,
            &[rec(10, kind::BEGIN, 0, 5), rec(20, kind::MARK, 0, 6)],
        )
        .unwrap();
        w.thread(3, 2, 200, b"b").unwrap();
        w.records(
            3,
            2,
            &[rec(30, kind::BEGIN, 0, 6), rec(40, kind::END, 0, 0)],
        )
        .unwrap();
    });
    let outer = x(&t, "outer");
    assert_eq!(outer[0]["tid"], 100);
    assert_eq!(outer[0]["dur"], "0.010");
    assert_eq!(outer[0]["args"]["npuprof"], "thread exited");
    assert_eq!(x(&t, "inner")[0]["tid"], 200);
    let names: Vec<_> = t
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| e["args"]["name"].clone())
        .collect();
    assert_eq!(names, ["Thread 100 (a)", "Thread 200 (b)"]);
}

/// A range crossing a step boundary (opened in step 2, closed in step 3) would overlap the steps on the
/// thread's track: those two steps go to the `Steps` lane, the others stay on the thread.
#[test]
fn steps_crossed_by_a_range_move_to_the_steps_lane() {
    let (t, _, steps) = on_main(&[
        rec(100, kind::STEP, 1, 0),
        rec(110, kind::BEGIN, 0, 5),
        rec(120, kind::END, 0, 0),
        rec(200, kind::STEP, 2, 0),
        rec(250, kind::BEGIN, 0, 6), // crosses the end of step 2 / the start of step 3
        rec(300, kind::STEP, 3, 0),
        rec(350, kind::END, 0, 0),
        rec(400, kind::STEP, 4, 0),
        rec(410, kind::BEGIN, 0, 5), // open at stop: inside the last step
    ]);
    let tid_of = |n: &str| x(&t, n)[0]["tid"].as_u64().unwrap();
    assert_eq!(tid_of("ProfilerStep#1"), 7);
    assert_eq!(tid_of("ProfilerStep#2"), STEPS_TID as u64);
    assert_eq!(tid_of("ProfilerStep#3"), STEPS_TID as u64);
    assert_eq!(tid_of("ProfilerStep#4"), 7);
    assert!(t
        .iter()
        .any(|e| e["ph"] == "M" && e["tid"] == STEPS_TID && e["args"]["name"] == "Steps"));
    // Issue 18: the range open across the start of step 3 encloses it: not a framework op (compare would
    // put step 3 under it); the ranges inside one step are.
    let cats: Vec<(String, String)> = t
        .iter()
        .filter(|e| e["ph"] == "X" && !e["name"].as_str().unwrap().starts_with("ProfilerStep#"))
        .map(|e| {
            (
                e["ts"].as_str().unwrap().to_string(),
                e["cat"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(cats.len(), 3, "{cats:?}");
    for (ts, cat) in &cats {
        let want = if ts.ends_with(".250") {
            "user_annotation"
        } else {
            "cpu_op"
        };
        assert_eq!(cat, want, "{cats:?}");
    }
    // The step spans (kernel attribution, step_trace_time) do not depend on the lane.
    assert_eq!(steps.len(), 4);
    assert_eq!(steps[1].end_ns, steps[2].start_ns);
}

#[test]
fn steps_span_to_the_next_step_or_the_stop() {
    let (t, _, steps) = host_pass(|w| {
        w.thread(0, 1, 7, b"").unwrap();
        w.records(
            0,
            1,
            &[
                rec(100, kind::STEP, 1, 64),
                rec(400, kind::STEP, 2, 8),
                rec(900, kind::STEP, 3, 8),
            ],
        )
        .unwrap();
    });
    assert_eq!(
        steps
            .iter()
            .map(|s| (s.step, s.end_ns - s.start_ns))
            .collect::<Vec<_>>(),
        [(1, 300), (2, 500), (3, 9100)]
    );
    let s1 = x(&t, "ProfilerStep#1");
    assert_eq!(s1[0]["args"]["num_scheduled_tokens"], 64);
    assert_eq!(s1[0]["tid"], 7);
    // Issue 18: msprof-analyze compare finds steps among the framework ops (cat `cpu_op`), and its tree
    // builder nests a step that begins where the previous one ends: each drawn step ends 1 ns before the
    // next begins (the spans above, for the CSVs, are unchanged); the last one ends at the stop.
    let ns =
        |v: &serde_json::Value| -> u64 { v.as_str().unwrap().replace('.', "").parse().unwrap() };
    for (n, want_dur) in [
        ("ProfilerStep#1", 299),
        ("ProfilerStep#2", 499),
        ("ProfilerStep#3", 9100),
    ] {
        let e = &x(&t, n)[0];
        assert_eq!(e["cat"], "cpu_op", "{e}");
        assert_eq!(ns(&e["dur"]), want_dur, "{e}");
    }
}

/// Issue 18: each device task's launch gets the start of the innermost framework op (`cpu_op` range) of its
/// thread that encloses it, from the streaming pass (nothing kept per range); a range drawn as a user
/// annotation (open across a step start) is no framework op.
#[test]
fn launches_get_the_innermost_enclosing_framework_op_of_their_thread() {
    use crate::device::{Launch, Launches};
    let d = tempfile::tempdir().unwrap();
    let sp = d.path().join(layout::SPOOL_NAME);
    let mut w = spool::Writer::new(std::fs::File::create(&sp).unwrap()).unwrap();
    w.name(5, b"outer").unwrap();
    w.name(6, b"inner").unwrap();
    w.thread(0, 1, 7, b"main").unwrap();
    w.records(
        0,
        1,
        &[
            rec(90, kind::BEGIN, 0, 5), // open across the step at 100: a user annotation
            rec(100, kind::STEP, 1, 0),
            rec(110, kind::BEGIN, 1, 5),
            rec(120, kind::BEGIN, 2, 6),
            rec(150, kind::END, 2, 0),
            rec(200, kind::END, 1, 0),
            rec(300, kind::END, 0, 0),
        ],
    )
    .unwrap();
    w.finish().unwrap();
    let conv = Conversion {
        anchor_tick: 0,
        anchor_ns: 1_000_000,
        ticks_per: 1,
        ns_per: 1,
    };
    let launch = |tid, t: u64, key| Launch {
        tid,
        ts_ns: 1_000_000 + t,
        key,
        op_ns: 0,
    };
    let mut hp = HostPass::new(42, conv, 0, 10_000);
    hp.launches = Launches::new(vec![
        launch(7, 130, 1),
        launch(7, 160, 2),
        launch(7, 250, 3),
        launch(8, 130, 4),
    ]);
    let at = layout::Place::open(d.path()).unwrap();
    let mut tw = Trace::create(&at, crate::config::TraceFormat::Json, false, u64::MAX, 42).unwrap();
    hp.read_spool(&mut tw, &at).unwrap();
    hp.finish(&mut tw, 10_000).unwrap();
    tw.finish().unwrap();
    let ops = std::mem::take(&mut hp.launches).by_key();
    let op = |key| ops.get(key).map(|l| l.op_ns - 1_000_000);
    assert_eq!(op(1), Some(120), "inner");
    assert_eq!(op(2), Some(110), "outer");
    assert_eq!(op(3), None, "only the user annotation encloses it");
    assert_eq!(op(4), None, "another thread");
}

/// A range that ends exactly where the next step begins (found by the property test): the step's slice, drawn
/// 1 ns short for compare, would end inside the range; the step goes to the `Steps` lane instead, so the
/// thread stays properly nested.
#[test]
fn a_range_ending_where_the_next_step_begins_moves_the_step_to_the_steps_lane() {
    let (t, _, _) = on_main(&[
        rec(100, kind::STEP, 1, 0),
        rec(110, kind::BEGIN, 0, 5),
        rec(200, kind::END, 0, 0), // ends at step 2's tick
        rec(200, kind::STEP, 2, 0),
        rec(210, kind::BEGIN, 0, 5),
        rec(220, kind::END, 0, 0),
    ]);
    let tid_of = |n: &str| x(&t, n)[0]["tid"].as_u64().unwrap();
    assert_eq!(tid_of("ProfilerStep#1"), STEPS_TID as u64);
    assert_eq!(tid_of("ProfilerStep#2"), 7);
}

/// Two steps of one thread at one nanosecond and a range begun at it (found by the property test in CI): the
/// second step, drawn 1 ns later, began inside the range and ended after it; the steps go to the `Steps`
/// lane, so the thread stays properly nested.
#[test]
fn steps_at_one_nanosecond_of_one_thread_go_to_the_steps_lane() {
    let (t, _, _) = on_main(&[
        rec(100, kind::STEP, 1, 0),
        rec(100, kind::STEP, 2, 0),
        rec(100, kind::BEGIN, 0, 5),
        rec(102, kind::END, 0, 0),
        rec(300, kind::STEP, 3, 0),
    ]);
    for n in ["ProfilerStep#1", "ProfilerStep#2", "ProfilerStep#3"] {
        assert_eq!(x(&t, n)[0]["tid"].as_u64(), Some(STEPS_TID as u64), "{n}");
    }
    let range = t
        .iter()
        .find(|e| e["ph"] == "X" && e["tid"] == 7)
        .expect("the range is drawn on its thread");
    assert_eq!(range["ts"], x(&t, "ProfilerStep#1")[0]["ts"]);
}

/// Steps of several threads at one nanosecond (found by the storm test): each is drawn after the previous
/// one's drawn end, so no step begins at or before the previous one ends (compare would nest it); their
/// spans for the CSVs stay where they were taken.
#[test]
fn steps_at_one_nanosecond_are_drawn_one_after_the_other() {
    let (t, _, steps) = host_pass(|w| {
        w.thread(0, 1, 7, b"a").unwrap();
        w.thread(1, 2, 8, b"b").unwrap();
        w.records(
            0,
            1,
            &[rec(100, kind::STEP, 1, 0), rec(300, kind::STEP, 3, 0)],
        )
        .unwrap();
        w.records(1, 2, &[rec(100, kind::STEP, 2, 0)]).unwrap();
    });
    let ns =
        |v: &serde_json::Value| -> u64 { v.as_str().unwrap().replace('.', "").parse().unwrap() };
    let drawn: Vec<(u64, u64)> = ["ProfilerStep#1", "ProfilerStep#2", "ProfilerStep#3"]
        .iter()
        .map(|n| {
            let e = &x(&t, n)[0];
            (ns(&e["ts"]), ns(&e["ts"]) + ns(&e["dur"]))
        })
        .collect();
    for w in drawn.windows(2) {
        assert!(w[1].0 > w[0].1, "{drawn:?}");
    }
    assert_eq!(steps[0].start_ns, steps[1].start_ns);
}
