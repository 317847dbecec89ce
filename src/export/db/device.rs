//! The device tables from the neutral device model: `TASK` (every device task), `COMPUTE_TASK_INFO` (the
//! compute kernels among them) and `COMMUNICATION_OP` (the collectives), with the same rows as
//! `kernel_details.csv` and `communication.json`.

use super::batch::Batch;
use super::comm_name::CommNames;
use super::schema::INVALID;
use super::Db;
use crate::device::{Collective, Collectives, Kernel, Kernels};
use rusqlite::{params, Result};

/// The RTS task type msprof writes in `TASK.taskType` for an accelerator core type (the core type itself
/// goes to `COMPUTE_TASK_INFO.taskType`).
fn rts_task_type(core: &[u8]) -> &[u8] {
    match core {
        b"AI_CORE" => b"KERNEL_AICORE",
        b"AI_VECTOR_CORE" => b"KERNEL_AIVEC",
        b"MIX_AIC" => b"KERNEL_MIX_AIC",
        b"MIX_AIV" => b"KERNEL_MIX_AIV",
        b"AI_CPU" => b"KERNEL_AICPU",
        other => other,
    }
}

/// A connection id as the database holds it: the launching API's, or CANN's invalid value when unknown.
pub(super) fn connection(correlation: u64) -> i64 {
    match correlation & 0xffff_ffff {
        0 => INVALID,
        c => c as i64,
    }
}

impl Db {
    /// `TASK` and `COMPUTE_TASK_INFO` from the kernels (communication tasks get a `TASK` row only: they are
    /// not computing). `globalTaskId` is the kernel's index.
    pub(super) fn kernels(&mut self, k: &Kernels, device: u32) -> Result<()> {
        let na = self.id(b"N/A")?;
        // Unknown shapes are empty, not "N/A": advisor's AI Core check takes "N/A" for a shape
        // and logs "Can not convert / to float" for every matmul.
        let no_shape = self.id(b"")?;
        // The strings' ids, once per distinct string (a million tasks share a few hundred).
        let mut sym_ids: Vec<Option<i64>> = vec![None; k.strings.len()];
        let mut rts_ids: Vec<Option<i64>> = vec![None; k.strings.len()];
        let conn = &self.f.conn;
        // The columns that are the same on every row are literals of the statement, not bound per row.
        let mut task = Batch::new(
            conn,
            "INSERT INTO TASK",
            &format!(
                "(?, ?, {device}, ?, ?, {pid}, ?, {INVALID}, ?, ?, ?)",
                pid = self.pid
            ),
        )?;
        let mut info = Batch::new(
            conn,
            "INSERT INTO COMPUTE_TASK_INFO",
            &format!("(?, ?, ?, 0, ?, ?, {na}, {na}, {no_shape}, {na}, {na}, {no_shape}, {na}, {na}, {na})"),
        )?;
        let ids = &mut self.ids;
        for (i, x) in k.list.iter().enumerate() {
            let Kernel {
                name,
                op_type,
                core,
                start_ns,
                dur_ns,
                stream_id,
                task_id,
                model_id,
                block_dim,
                correlation,
                ..
            } = x;
            let mut sid = |s: crate::device::Sym, rts: bool| -> Result<i64> {
                let at = s_index(s, &k.strings);
                let slot = if rts {
                    &mut rts_ids[at]
                } else {
                    &mut sym_ids[at]
                };
                if let Some(id) = *slot {
                    return Ok(id);
                }
                let bytes = &k.str(s).bytes;
                let id = ids.id(conn, if rts { rts_task_type(bytes) } else { bytes })?;
                *slot = Some(id);
                Ok(id)
            };
            let rts = sid(*core, true)?;
            task.push(&[
                *start_ns as i64,
                start_ns.saturating_add(*dur_ns) as i64,
                connection(*correlation as u64),
                i as i64,
                rts,
                *stream_id as i64,
                *task_id as i64,
                *model_id as i64,
            ])?;
            if k.is_communication(x) {
                continue;
            }
            let (n, t, c) = (
                sid(*name, false)?,
                sid(*op_type, false)?,
                sid(*core, false)?,
            );
            info.push(&[n, i as i64, *block_dim as i64, c, t])?;
        }
        task.finish()?;
        info.finish()
    }

    /// `COMMUNICATION_OP` from the collectives (see [`operations`]).
    pub(super) fn collectives(&mut self, c: &Collectives, k: &Kernels, device: u32) -> Result<()> {
        let mut names = CommNames::default();
        let mut op = self.f.conn.prepare(
            "INSERT INTO COMMUNICATION_OP VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let conn = &self.f.conn;
        let ids = &mut self.ids;
        for (i, x) in operations(c, k, device).iter().enumerate() {
            let group = &k.str(x.group).bytes;
            let (op_name, op_type) = names.name(&k.str(x.name).bytes, group);
            let alg = &k.str(x.alg).bytes;
            op.execute(params![
                ids.id(conn, op_name.as_bytes())?,
                x.start_ns as i64,
                x.start_ns.saturating_add(x.dur_ns) as i64,
                connection(x.correlation),
                ids.id(conn, group)?,
                i as i64,
                x.data_type,
                ids.id(conn, if alg.is_empty() { b"N/A" } else { alg })?,
                x.count as i64,
                ids.id(conn, op_type.as_bytes())?,
                x.device,
            ])?;
        }
        Ok(())
    }
}

/// The collective operations of a result: the backend's; without them (a backend that gives none), the
/// communication tasks among the kernels, which are the same operations with less detail.
pub(super) fn operations<'a>(
    c: &'a Collectives,
    k: &Kernels,
    device: u32,
) -> std::borrow::Cow<'a, [Collective]> {
    if !c.is_empty() {
        return std::borrow::Cow::Borrowed(&c.list);
    }
    let from_tasks = k.list.iter().filter(|x| k.is_communication(x));
    std::borrow::Cow::Owned(
        from_tasks
            .map(|t| Collective {
                name: t.name,
                start_ns: t.start_ns,
                dur_ns: t.dur_ns,
                data_type: crate::device::DATA_TYPE_UNKNOWN,
                device,
                stream_id: t.stream_id,
                correlation: t.correlation as u64,
                ..Default::default()
            })
            .collect(),
    )
}

/// The index of `s` in `strings` (the empty string's for a symbol of another table).
fn s_index(s: crate::device::Sym, strings: &crate::device::Strings) -> usize {
    let i = strings.index_of(s);
    if i < strings.len() {
        i
    } else {
        0
    }
}
