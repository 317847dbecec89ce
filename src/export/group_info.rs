//! torch_npu's `parallel_group_info` object from the groups the process told (`npuprof_set_group`): the same
//! text in `profiler_metadata.json` and the database's `META_DATA`.

use crate::format::json;

/// The value of `"parallel_group_info"`: a JSON object (no `true`/`false`/`null`: msprof-analyze's
/// communication_matrix reads the database's copy with Python's `ast.literal_eval`).
pub(crate) fn object(groups: &[crate::device::GroupInfo]) -> String {
    let members: Vec<String> = groups
        .iter()
        .map(|g| {
            let ranks: Vec<String> = g.global_ranks.iter().map(u32::to_string).collect();
            format!(
                "\n    {}: {{\"group_name\": {}, \"group_rank\": {}, \"global_ranks\": [{}]}}",
                json::string(g.name.as_bytes()),
                json::string(g.pg_name.as_bytes()),
                g.group_rank,
                ranks.join(", ")
            )
        })
        .collect();
    format!("{{{}\n  }}", members.join(","))
}
