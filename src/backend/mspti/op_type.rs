//! What MSPTI's kernel record says about a task's op, and what it does not.
//!
//! `msptiActivityKernel` carries `type` (the runtime task type, `KERNEL_AICORE`, `KERNEL_AIVEC`, ...) and
//! `name` (the kernel's name), but no op type, block dim or task id (the published layout,
//! tests/c/layouts/mspti_published.h; MSPTI reads the task id internally but does not report it). Ascend's own
//! MSPTI → database writer (msMonitor, mstt `msmonitor/plugin/ipc_monitor/db/DBProcessManager.cpp`,
//! `ProcessKernelData`) accordingly writes `opType = "N/A"` and `blockDim = mixBlockDim = taskId = UINT32_MAX`.
//!
//! The op type is nevertheless part of the kernel's name when CANN compiled the kernel: a compiled kernel is
//! named `<op type>_<32 hex digits of its key's MD5>_<variant>_<tiling key>`, as MSPTI's own system test
//! shows for the `Axpy` op (`Axpy_233851a3505389e43928a8bba133a74d_high_performance_210000000`, Ascend/mspti
//! `test/mspti_cpp/st/script/test_mspti_samples.py`). That prefix is the op type written. A name without that
//! hash (an AI CPU kernel, a graph node) is written whole as its own type: `N/A`, what msMonitor writes, would
//! make msprof-analyze's compare drop the row (`KernelDetailsBean.is_invalid_op_type`) and fail a step
//! comparison with no kernel left ("There is no kernel details information for step N").

/// msprof's `Task Type` (kernel_details' `Accelerator Core`) of an MSPTI kernel's `type`. MSPTI names the
/// runtime's task type (`TS_TASK_TYPE_KERNEL_AICORE` → `KERNEL_AICORE`, ..., Ascend/mspti
/// `csrc/activity/ascend/parser/kernel_parser.cpp` `GetValidKernelTypeName`, the only five it reports); msprof
/// writes the same task types as `AI_CORE`, `AI_CPU`, `AI_VECTOR_CORE`, `MIX_AIC`, `MIX_AIV`, the names
/// msprof-analyze's advisor and compare test for. Any other value is kept as it is.
pub(super) fn task_type(t: &[u8]) -> &[u8] {
    TASK_TYPES
        .iter()
        .find(|(m, _)| unquoted(m).as_bytes() == t)
        .map_or(t, |(_, p)| unquoted(p).as_bytes())
}

/// [`task_type`] of a JSON string literal (the form the trace's `Task Type` arg is written in).
pub(super) fn task_type_literal(lit: &str) -> &str {
    TASK_TYPES
        .iter()
        .find(|(m, _)| *m == lit)
        .map_or(lit, |(_, p)| p)
}

/// MSPTI's kernel types and msprof's task types, as JSON string literals.
const TASK_TYPES: [(&str, &str); 5] = [
    ("\"KERNEL_AICORE\"", "\"AI_CORE\""),
    ("\"KERNEL_AICPU\"", "\"AI_CPU\""),
    ("\"KERNEL_AIVEC\"", "\"AI_VECTOR_CORE\""),
    ("\"KERNEL_MIX_AIC\"", "\"MIX_AIC\""),
    ("\"KERNEL_MIX_AIV\"", "\"MIX_AIV\""),
];

fn unquoted(lit: &str) -> &str {
    &lit[1..lit.len() - 1]
}

/// The value msprof writes for a number the source does not have (msMonitor's `UINT32_MAX`): `Block Dim` and
/// `Task ID` of MSPTI kernels (and `Model ID`, as before).
pub(super) const UNKNOWN_U32: u32 = u32::MAX;

/// Where the op type of a kernel named `name` ends: before `_<32 hex digits>` followed by `_` or the end, the
/// first such hash; `None` when the name has none (or nothing before it).
fn op_type_len(name: &[u8]) -> Option<usize> {
    const HASH: usize = 32;
    let mut i = 1;
    while i + 1 + HASH <= name.len() {
        if name[i] == b'_'
            && name[i + 1..i + 1 + HASH].iter().all(u8::is_ascii_hexdigit)
            && name.get(i + 1 + HASH).map_or(true, |&c| c == b'_')
        {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The op type of a kernel named `name` (see the module's comment): the prefix before CANN's compile hash, or
/// the whole name.
pub(super) fn op_type(name: &[u8]) -> &[u8] {
    op_type_len(name).map_or(name, |n| &name[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MSPTI's five kernel types are msprof's task types; anything else is kept.
    #[test]
    fn kernel_types_are_msprofs_task_types() {
        for (mspti, msprof) in [
            ("KERNEL_AICORE", "AI_CORE"),
            ("KERNEL_AICPU", "AI_CPU"),
            ("KERNEL_AIVEC", "AI_VECTOR_CORE"),
            ("KERNEL_MIX_AIC", "MIX_AIC"),
            ("KERNEL_MIX_AIV", "MIX_AIV"),
            ("KERNEL_FFTS", "KERNEL_FFTS"),
            ("", ""),
        ] {
            assert_eq!(task_type(mspti.as_bytes()), msprof.as_bytes(), "{mspti}");
            let lit = |s: &str| format!("\"{s}\"");
            assert_eq!(task_type_literal(&lit(mspti)), lit(msprof), "{mspti}");
        }
    }

    #[test]
    fn the_op_type_is_the_prefix_before_cann_s_compile_hash() {
        // MSPTI's own sample kernel.
        assert_eq!(
            op_type(b"Axpy_233851a3505389e43928a8bba133a74d_high_performance_210000000"),
            b"Axpy"
        );
        // Op types with underscores keep them; the hash may end the name.
        assert_eq!(
            op_type(b"Trans_Data_0123456789abcdef0123456789ABCDEF"),
            b"Trans_Data"
        );
        assert_eq!(
            op_type(b"MatMulV2_ffffffffffffffffffffffffffffffff_1"),
            b"MatMulV2"
        );
    }

    #[test]
    fn a_name_without_the_hash_is_its_own_type() {
        for n in [
            &b"MatMul_1"[..],
            b"hcom_allReduce__1_1",
            b"",
            // 31 or 33 hex digits, or the hash first: not CANN's form.
            b"Add_0123456789abcdef0123456789abcde",
            b"Add_0123456789abcdef0123456789abcdef0",
            b"_0123456789abcdef0123456789abcdef",
            b"Add_0123456789abcdef0123456789abcdeg_x",
        ] {
            assert_eq!(op_type(n), n, "{}", String::from_utf8_lossy(n));
        }
    }
}
