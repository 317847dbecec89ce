//! `NPUPROF_AIC_METRICS`: the aclprof AI Core metric table.

/// `NPUPROF_AIC_METRICS`: torch_npu's `AiCMetrics` names, each an `aclprofAicoreMetrics` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AicMetrics {
    None,
    ArithmeticUtilization,
    PipeUtilization,
    Memory,
    MemoryL0,
    ResourceConflictRatio,
    MemoryUB,
    L2Cache,
    MemoryAccess,
}

impl AicMetrics {
    /// (torch_npu `AiCMetrics` name, `ACL_AICORE_*` name, `aclprofAicoreMetrics` value).
    pub const TABLE: [(AicMetrics, &'static str, &'static str, u32); 9] = [
        (AicMetrics::None, "None", "ACL_AICORE_NONE", 0xFF),
        (
            AicMetrics::ArithmeticUtilization,
            "ArithmeticUtilization",
            "ACL_AICORE_ARITHMETIC_UTILIZATION",
            0,
        ),
        (
            AicMetrics::PipeUtilization,
            "PipeUtilization",
            "ACL_AICORE_PIPE_UTILIZATION",
            1,
        ),
        (
            AicMetrics::Memory,
            "Memory",
            "ACL_AICORE_MEMORY_BANDWIDTH",
            2,
        ),
        (
            AicMetrics::MemoryL0,
            "MemoryL0",
            "ACL_AICORE_L0B_AND_WIDTH",
            3,
        ),
        (
            AicMetrics::ResourceConflictRatio,
            "ResourceConflictRatio",
            "ACL_AICORE_RESOURCE_CONFLICT_RATIO",
            4,
        ),
        (AicMetrics::MemoryUB, "MemoryUB", "ACL_AICORE_MEMORY_UB", 5),
        (AicMetrics::L2Cache, "L2Cache", "ACL_AICORE_L2_CACHE", 6),
        (
            AicMetrics::MemoryAccess,
            "MemoryAccess",
            "ACL_AICORE_MEMORY_ACCESS",
            8,
        ),
    ];

    fn row(self) -> (AicMetrics, &'static str, &'static str, u32) {
        Self::TABLE
            .into_iter()
            .find(|r| r.0 == self)
            .unwrap_or(Self::TABLE[0])
    }
    pub fn name(self) -> &'static str {
        self.row().1
    }
    pub fn acl_name(self) -> &'static str {
        self.row().2
    }
    pub fn value(self) -> u32 {
        self.row().3
    }
    /// Accepts the torch_npu name (`PipeUtilization`, `AiCMetrics.PipeUtilization`) or the ACL name
    /// (`ACL_AICORE_PIPE_UTILIZATION`), case-insensitively.
    pub fn parse(v: &str) -> Option<AicMetrics> {
        let v = v.trim();
        let v = v.strip_prefix("AiCMetrics.").unwrap_or(v);
        Self::TABLE
            .into_iter()
            .find(|r| r.1.eq_ignore_ascii_case(v) || r.2.eq_ignore_ascii_case(v))
            .map(|r| r.0)
    }
}
