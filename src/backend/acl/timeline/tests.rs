use super::*;
use crate::export::trace_view::TraceWriter;
use crate::layout::Place;

/// The lanes of one msprof timeline file holding `text`, written to the trace `t.json` of the directory
/// returned.
fn draw(text: &str) -> (tempfile::TempDir, LaneStats, Option<String>) {
    draw_with(text, false)
}

/// [`draw`], the `Ascend Hardware` slices also returned as kernels when `want_kernels`.
fn draw_with(text: &str, want_kernels: bool) -> (tempfile::TempDir, LaneStats, Option<String>) {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("msprof_1.json"), text).unwrap();
    let lanes = Box::new(MsprofLanes {
        dir: Dir::open(d.path()).unwrap(),
        files: vec!["msprof_1.json".into()],
        budget: std::time::Duration::from_secs(3600),
        device: 0,
        shift: 0,
        want_kernels,
        launch_limit: 0,
        ops: Launches::default(),
    });
    let mut tw = TraceWriter::create(&Place::open(d.path()).unwrap(), "t.json", u64::MAX).unwrap();
    let (st, err) = lanes.write(&mut tw);
    tw.finish().unwrap();
    (d, st, err)
}

/// The lanes of one msprof timeline file holding `text`, written to a scratch trace.
fn write_timeline(text: &str) -> (LaneStats, Option<String>) {
    let (_, st, err) = draw(text);
    (st, err)
}

/// Issue 18 item 3: msprof's `Plane N` threads sorted before any `...Communication...` thread crashed
/// msprof-analyze compare. The group thread sorts first, msprof's threads after it, and the `hcom_*`
/// operations move onto it (the tasks stay on their plane), in either order of names and events.
#[test]
fn communication_gets_a_group_thread_sorted_first_holding_the_operations() {
    for named_late in [false, true] {
        let name = r#"{"ph":"M","pid":9,"name":"process_name","args":{"name":"Communication"}}"#;
        let rest = r#"{"ph":"M","pid":9,"tid":4,"name":"thread_name","args":{"name":"Plane 0"}},
            {"ph":"M","pid":9,"tid":4,"name":"thread_sort_index","args":{"sort_index":4}},
            {"ph":"X","pid":9,"tid":4,"ts":"1000.000","dur":"30.000","name":"hcom_allReduce__1_1","args":{}},
            {"ph":"X","pid":9,"tid":4,"ts":"1001.000","dur":"2.000","name":"Notify_Wait","args":{}}"#;
        let text = if named_late {
            format!("[{rest},{name}]")
        } else {
            format!("[{name},{rest}]")
        };
        let (d, _, err) = draw(&text);
        assert_eq!(err, None);
        let t: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(d.path().join("t.json")).unwrap()).unwrap();
        let sort_of = |tid: u32| {
            t.iter()
                .find(|e| e["name"] == "thread_sort_index" && e["tid"] == tid)
                .map(|e| e["args"]["sort_index"].as_u64().unwrap())
        };
        assert_eq!(sort_of(GROUP_TID), Some(0), "{t:?}");
        assert_eq!(sort_of(4), Some(5), "{t:?}");
        assert!(t.iter().any(|e| e["name"] == "thread_name"
            && e["tid"] == GROUP_TID
            && e["args"]["name"] == "Group default Communication"));
        let tid_of = |n: &str| t.iter().find(|e| e["name"] == n).unwrap()["tid"].clone();
        assert_eq!(
            tid_of("hcom_allReduce__1_1"),
            GROUP_TID,
            "late: {named_late}"
        );
        assert_eq!(tid_of("Notify_Wait"), 4);
    }
}

/// Issue 15 item 8: events of a process msprof never names were all kept until the end and then skipped.
/// At most MAX_PENDING_BYTES of them wait; the rest are skipped at once, and all are counted.
#[test]
fn events_of_an_unnamed_process_wait_in_bounded_memory_and_are_counted() {
    let ev = r#"{"ph":"X","pid":77,"tid":1,"ts":"1000.000","dur":"1.000","name":"k","cat":"c","args":{}}"#;
    let n = 2 * MAX_PENDING_BYTES / (std::mem::size_of::<Pending>() + 16) + 10;
    let mut text = String::with_capacity(n * (ev.len() + 2) + 200);
    text.push_str(r#"[{"ph":"M","pid":5,"name":"process_name","args":{"name":"Ascend Hardware"}}"#);
    text.push_str(&format!(",{}", ev.replace("77", "5")));
    for _ in 0..n {
        text.push(',');
        text.push_str(ev);
    }
    text.push(']');
    let (st, err) = write_timeline(&text);
    assert_eq!(err, None);
    assert_eq!(st.events, 1);
    assert_eq!(st.skipped, n as u64);
}

/// Issue 15 item 8: one 1 GB JSON string in a timeline took 2.1 GB and 40 s (the element held whole and
/// parsed again for every block). An event longer than MAX_EVENT_BYTES ends the parse with a reason.
#[test]
fn a_giant_timeline_event_ends_the_parse_instead_of_being_held() {
    let mut text = String::from(
        r#"[{"ph":"M","pid":5,"name":"process_name","args":{"name":"Ascend Hardware"}},"#,
    );
    text.push_str(
        r#"{"ph":"X","pid":5,"tid":1,"ts":"1000.000","dur":"1.000","name":"k","args":{}},"#,
    );
    text.push_str(r#"{"ph":"X","pid":5,"tid":1,"ts":"1000.000","dur":"1.000","name":""#);
    text.push_str(&"x".repeat(MAX_EVENT_BYTES + (9 << 20)));
    text.push_str(r#""}]"#);
    let (st, err) = write_timeline(&text);
    assert_eq!(st.events, 1);
    let err = err.expect("the parse stops at the giant event");
    assert!(err.contains("longer than"), "{err}");
}

/// Without op_summary the kernels are the `Ascend Hardware` slices, each with its own connection id (the
/// database's link to its API call); a MEMCPY_ASYNC slice is a copy, not a kernel.
#[test]
fn hardware_slices_are_kernels_with_their_connection_ids_but_copies_are_not() {
    let (_d, st, err) = draw_with(
        r#"[{"ph":"M","pid":7,"name":"process_name","args":{"name":"Ascend Hardware"}},
        {"ph":"X","pid":7,"tid":2,"ts":"10.000","dur":"4.000","name":"MatMul_1","args":{"Task Type":"AI_CORE","Task Id":3,"connection_id":12}},
        {"ph":"X","pid":7,"tid":2,"ts":"20.000","dur":"2.000","name":"MEMCPY_ASYNC","args":{"Task Type":"MEMCPY_ASYNC","connection_id":13}}]"#,
        true,
    );
    assert_eq!(err, None);
    let k = &st.kernels;
    let got: Vec<(&[u8], u32, u32, u32)> = k
        .list
        .iter()
        .map(|x| {
            (
                &k.str(x.name).bytes[..],
                x.stream_id,
                x.task_id,
                x.correlation,
            )
        })
        .collect();
    assert_eq!(got, [(&b"MatMul_1"[..], 2, 3, 12)]);
}
