#!/usr/bin/env python3
"""trace_view.pftrace as Perfetto reads it, checked against trace_view.json of the same result.

    python3 tests/perfetto_check.py trace OUTPUT_DIR      (ASCEND_PROFILER_OUTPUT/ of one result)
    python3 tests/perfetto_check.py protos PROTO_FILE     (proto/perfetto_trace_subset.proto)

`trace`: decodes the file with the compiled protos of the `perfetto` package on PyPI (Perfetto's own
`perfetto_trace_pb2`), then reads it as Perfetto's trace processor does (per sequence: incremental state
cleared by the first packet, interned names, categories and debug annotations defined before use, counter
descriptors before their samples; events sorted by timestamp with ties in file order; SLICE_BEGIN/SLICE_END
stacked per track; v1 flow events bound to the innermost open slice of their track). It reads the JSON as
Perfetto's JSON importer does (ties: longest `X` first), and asserts the same tracks (every lane, named as
the JSON names it, and the process names), the same slices (lane, name, category, exact ns begin and
duration, args, parent), instants, counter samples and flows (each bound to the same two slices), and that
every track is balanced. Prints one summary line; exits 1 with the first differences.

`protos`: every message and field of the subset has the name, number, type and label of Perfetto's
published protos (as compiled into that package).
"""
import collections
import gzip
import json
import os
import re
import sys
import zlib

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb


class Failed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise Failed(msg)


def us_to_ns(v):
    """A JSON `ts`/`dur` (a µs string with 3 decimals, or a number) in exact ns."""
    s = str(v)
    if "." in s:
        whole, frac = s.split(".", 1)
        frac = (frac + "000")[:3]
        return int(whole or "0") * 1000 + int(frac) * (1 if not whole.startswith("-") else -1)
    return int(float(s) * 1000)


def canon(v):
    """An arg value in one form for both formats."""
    if isinstance(v, bool):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, (dict, list)) or v is None:
        return json.dumps(v, sort_keys=True)
    return v


# ---- the JSON, as Perfetto's JSON importer reads it ----

def read_json(out):
    for name in ("trace_view.json", "trace_view.json.gz"):
        p = os.path.join(out, name)
        if os.path.exists(p):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(p, "rt", encoding="utf-8") as f:
                return json.load(f)
    raise Failed(f"no trace_view.json in {out}")


def json_model(events):
    procs, lanes = {}, {}
    for e in events:
        if e.get("ph") == "M":
            a = e.get("args", {})
            if e["name"] == "process_name":
                procs[e["pid"]] = a.get("name")
            elif e["name"] == "thread_name":
                lanes[(e["pid"], e["tid"])] = a.get("name")
    lane = lambda e: (e["pid"], lanes.get((e["pid"], e["tid"])) or f"Thread {e['tid']}")
    ops = []  # (ts, order class, -dur, file index, op)
    counters = []
    for i, e in enumerate(events):
        ph = e.get("ph")
        if ph == "X":
            ts, dur = us_to_ns(e["ts"]), us_to_ns(e["dur"])
            args = {k: canon(v) for k, v in (e.get("args") or {}).items()}
            s = dict(lane=lane(e), name=e["name"], cat=e.get("cat", ""), ts=ts, dur=dur, args=args)
            if dur == 0:  # begins and ends at once (the importer takes an X whole)
                ops.append((ts, 1, 1, i, ("Z", s)))
            else:
                ops.append((ts, 1, -dur, i, ("B", s)))
                ops.append((ts + dur, 0, 0, i, ("E", dict(lane=s["lane"], ts=ts + dur, slice=s))))
        elif ph == "i":
            ts = us_to_ns(e["ts"])
            args = {k: canon(v) for k, v in (e.get("args") or {}).items()}
            s = dict(lane=lane(e), name=e["name"], cat=e.get("cat", ""), ts=ts, dur=0, args=args)
            ops.append((ts, 2, 0, i, ("I", s)))
        elif ph in ("s", "f"):
            ts = us_to_ns(e["ts"])
            ops.append((ts, 2, 0, i, (ph, dict(lane=lane(e), key=(str(e.get("id")), e.get("cat", ""), e["name"])))))
        elif ph == "C":
            for k, v in (e.get("args") or {}).items():
                counters.append(((e["pid"], f"{e['name']} {k}"), us_to_ns(e["ts"]), float(v)))
    ops.sort(key=lambda o: o[:4])
    named = {(pid, name) for (pid, _), name in lanes.items()}
    used = {lane(e) for e in events if e.get("ph") in ("X", "i", "s", "f")}
    tracks = {"lanes": named | used, "processes": {p: n for p, n in procs.items()}}
    return simulate([o[4] for o in ops], "trace_view.json"), sorted(counters), tracks


# ---- the protobuf, as Perfetto's trace processor reads it ----

def packets(path):
    with open(path, "rb") as f:
        t = pb.Trace()
        t.ParseFromString(f.read())
    for p in t.packet:
        if p.HasField("compressed_packets"):
            inner = pb.Trace()
            inner.ParseFromString(zlib.decompress(p.compressed_packets))
            yield from inner.packet
        else:
            yield p


def pftrace_model(path):
    seq_state = {}  # seq id -> {"valid": bool, kind -> {iid: str}}
    tracks = {}  # uuid -> descriptor
    counter_described = set()
    events = []  # (ts, file index, uuid, seq id, TrackEvent, interned snapshot)
    n = 0
    for i, p in enumerate(packets(path)):
        n += 1
        seq = p.trusted_packet_sequence_id
        expect(seq != 0, f"packet {i} has no trusted_packet_sequence_id")
        st = seq_state.setdefault(seq, {"valid": False, "names": {}, "cats": {}, "keys": {}, "strs": {}})
        if p.sequence_flags & pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED:
            st.update(valid=True, names={}, cats={}, keys={}, strs={})
        if p.HasField("interned_data"):
            expect(st["valid"], f"packet {i}: interned data before the sequence's state was cleared")
            d = p.interned_data
            st["names"].update({x.iid: x.name for x in d.event_names})
            st["cats"].update({x.iid: x.name for x in d.event_categories})
            st["keys"].update({x.iid: x.name for x in d.debug_annotation_names})
            st["strs"].update({x.iid: x.str.decode() for x in d.debug_annotation_string_values})
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            expect(d.uuid not in tracks, f"track {d.uuid} described twice")
            tracks[d.uuid] = d
            if d.HasField("counter"):
                counter_described.add(d.uuid)
        if p.HasField("track_event"):
            te = p.track_event
            expect(p.sequence_flags & pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE and st["valid"],
                   f"packet {i}: a track event without SEQ_NEEDS_INCREMENTAL_STATE on a valid sequence")
            expect(p.HasField("timestamp") and not p.HasField("timestamp_clock_id"),
                   f"packet {i}: not an absolute timestamp in trace time")
            if te.type == pb.TrackEvent.TYPE_COUNTER:
                expect(te.track_uuid in counter_described, f"packet {i}: a sample before its counter's descriptor")
            name = te.name
            if te.HasField("name_iid"):
                expect(te.name_iid in st["names"], f"packet {i}: event name iid {te.name_iid} not interned before")
                name = st["names"][te.name_iid]
            cats = [st["cats"].get(c) for c in te.category_iids] + list(te.categories)
            expect(None not in cats, f"packet {i}: category iid not interned before")
            args = {}
            for a in te.debug_annotations:
                key = a.name
                if a.HasField("name_iid"):
                    expect(a.name_iid in st["keys"], f"packet {i}: annotation name iid not interned before")
                    key = st["keys"][a.name_iid]
                kind = a.WhichOneof("value")
                if kind == "string_value_iid":
                    expect(a.string_value_iid in st["strs"], f"packet {i}: string value iid not interned before")
                    v = st["strs"][a.string_value_iid]
                elif kind == "legacy_json_value":
                    v = canon(json.loads(a.legacy_json_value))
                else:
                    v = canon(getattr(a, kind))
                args[key] = v
            events.append((p.timestamp, i, te.track_uuid, te, name, ",".join(cats), args))
    expect(n > 0, "no packets")

    def lane(uuid):
        d = tracks.get(uuid)
        expect(d is not None, f"track {uuid} has no descriptor")
        if d.HasField("thread"):
            return (d.thread.pid, d.thread.thread_name or f"Thread {d.thread.tid}")
        parent = tracks.get(d.parent_uuid)
        expect(parent is not None and parent.HasField("process"), f"track {uuid} ({d.name}) has no process parent")
        expect(d.sibling_merge_behavior == pb.TrackDescriptor.SIBLING_MERGE_BEHAVIOR_NONE,
               f"track {d.name} may be merged with a sibling of its name")
        return (parent.process.pid, d.name)

    ops, counters = [], []
    for ts, i, uuid, te, name, cat, args in sorted(events, key=lambda e: (e[0], e[1])):
        if te.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            ops.append(("B", dict(lane=lane(uuid), name=name, cat=cat, ts=ts, args=args, uuid=uuid)))
        elif te.type == pb.TrackEvent.TYPE_SLICE_END:
            expect(not te.name and not te.HasField("name_iid") and not cat, "a SLICE_END with a name or category")
            ops.append(("E", dict(lane=lane(uuid), ts=ts, uuid=uuid)))
        elif te.type == pb.TrackEvent.TYPE_INSTANT:
            ops.append(("I", dict(lane=lane(uuid), name=name, cat=cat, ts=ts, dur=0, args=args)))
        elif te.type == pb.TrackEvent.TYPE_COUNTER:
            d = tracks[uuid]
            counters.append(((tracks[d.parent_uuid].process.pid, d.name), ts, te.double_counter_value))
        else:
            ph = chr(te.legacy_event.phase)
            expect(ph in "sf", f"an event of phase {ph!r}")
            expect((ph == "f") == te.legacy_event.bind_to_enclosing, "a flow end that does not bind to its slice")
            ops.append((ph, dict(lane=lane(uuid), key=(te.legacy_event.unscoped_id, cat, name))))
    return simulate(ops, "trace_view.pftrace"), sorted(counters), tracks, lane


def simulate(ops, what):
    """Per-lane stacks: every END closes the innermost open slice; flows bind to the innermost open slice."""
    stacks = collections.defaultdict(list)
    slices, flows = [], collections.defaultdict(dict)
    for op, s in ops:
        st = stacks[s["lane"]]
        if op == "B":
            s["parent"] = st[-1]["id"] if st else None
            s["id"] = (s["lane"], s["name"], s["ts"], len(st))
            st.append(s)
        elif op == "E":
            expect(st, f"{what}: an end with no open slice on {s['lane']} at {s['ts']}")
            top = st.pop()
            if "slice" in s:  # the JSON's X: the innermost open slice must end here too (equal ends in any order)
                expect(top["ts"] + top["dur"] == s["ts"], f"{what}: {s['slice']['name']} on {s['lane']} ends "
                       f"at {s['ts']} while {top['name']} (ending at {top['ts'] + top['dur']}) is open")
            top["dur"] = s["ts"] - top["ts"]
            slices.append(top)
        elif op in ("I", "Z"):
            s["parent"] = st[-1]["id"] if st else None
            slices.append(s)
        else:
            end = "start" if op == "s" else "end"
            flows[s["key"]][end] = st[-1]["id"] if st else None
    for lane, st in stacks.items():
        expect(not st, f"{what}: {len(st)} slices left open on {lane}: {[x['name'] for x in st][:5]}")
    return slices, flows


def slice_key(s):
    return (s["lane"], s["name"], s["cat"], s["ts"], s["dur"], json.dumps(s["args"], sort_keys=True),
            s["parent"][1:3] if s["parent"] else None)


def has_json(out):
    return any(os.path.exists(os.path.join(out, n)) for n in ("trace_view.json", "trace_view.json.gz"))


def compare(out):
    (ps, pf), pc, tracks, lane = pftrace_model(os.path.join(out, "trace_view.pftrace"))
    bound = sum(1 for f in pf.values() if f.get("start") and f.get("end"))
    if not has_json(out):
        return (f"PFTRACE OK: {len(ps)} slices and instants, {len(pc)} counter samples, {len(pf)} flows "
                f"({bound} bound at both ends), {len(tracks)} tracks, all balanced (no JSON beside it)")
    (js, jf), jc, jt = json_model(read_json(out))
    pl = {lane(u) for u, d in tracks.items() if d.HasField("thread") or (d.parent_uuid and not d.HasField("counter"))}
    expect(pl == jt["lanes"], f"tracks differ: only in the JSON {sorted(jt['lanes'] - pl)[:5]}, only in the "
           f"pftrace {sorted(pl - jt['lanes'])[:5]}")
    pp = {d.process.pid: d.process.process_name for d in tracks.values() if d.HasField("process")}
    expect(all(pp.get(p) == n for p, n in jt["processes"].items()),
           f"process names differ: {jt['processes']} / {pp}")
    a = collections.Counter(slice_key(s) for s in js)
    b = collections.Counter(slice_key(s) for s in ps)
    only_j, only_p = a - b, b - a
    expect(not only_j and not only_p,
           f"slices differ: {sum(only_j.values())} only in the JSON, e.g. {list(only_j)[:3]}; "
           f"{sum(only_p.values())} only in the pftrace, e.g. {list(only_p)[:3]}")
    expect(jc == pc, f"counter samples differ: {len(jc)} vs {len(pc)}; e.g. "
           f"{[x for x in jc if x not in pc][:3]} / {[x for x in pc if x not in jc][:3]}")
    # Flows: each JSON flow (by its id, category and name) and its pftrace twin bind the same two slices.
    def ends(flows):
        return collections.Counter((k[1], k[2], f.get("start") and f["start"][1:3], f.get("end") and f["end"][1:3])
                                   for k, f in flows.items())
    expect(ends(jf) == ends(pf), f"flows differ: {len(jf)} vs {len(pf)}; e.g. "
           f"{list((ends(jf) - ends(pf)))[:3]} / {list((ends(pf) - ends(jf)))[:3]}")
    return (f"PFTRACE OK: {len(ps)} slices and instants, {len(pc)} counter samples, {len(pf)} flows "
            f"({bound} bound at both ends), {len(tracks)} tracks, all balanced; same as trace_view.json "
            f"(slices, tracks, process names, counters, flows)")


# ---- the subset .proto against the published protos ----

SCALARS = {"double": 1, "float": 2, "int64": 3, "uint64": 4, "int32": 5, "fixed64": 6, "fixed32": 7,
           "bool": 8, "string": 9, "bytes": 12, "uint32": 13, "sfixed32": 15, "sfixed64": 16, "sint32": 17,
           "sint64": 18}


def check_protos(path):
    text = re.sub(r"//[^\n]*", "", open(path).read())
    n_fields = 0
    stack = []  # (kind, name, depth at open)
    depth = 0
    for tok in re.finditer(r"(message|enum|oneof)\s+(\w+)\s*\{|\}|(optional|repeated)?\s*([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;", text):
        if tok.group(1):
            stack.append((tok.group(1), tok.group(2)))
            continue
        if tok.group(0) == "}":
            stack.pop()
            continue
        if not stack or stack[-1][0] == "enum":
            continue
        label, typ, name, num = tok.group(3), tok.group(4), tok.group(5), int(tok.group(6))
        msgs = [n for k, n in stack if k == "message"]
        cls = pb
        for m in msgs:
            cls = getattr(cls, m, None)
            expect(cls is not None, f"no message {'.'.join(msgs)} in Perfetto's protos")
        fields = {f.name: f for f in cls.DESCRIPTOR.fields}
        expect(name in fields, f"{'.'.join(msgs)}.{name}: no such field in Perfetto's protos")
        f = fields[name]
        expect(f.number == num, f"{'.'.join(msgs)}.{name} is {num} here, {f.number} in Perfetto's")
        if typ in SCALARS:
            expect(f.type == SCALARS[typ], f"{'.'.join(msgs)}.{name}: type {typ} here, {f.type} in Perfetto's")
        else:
            ref = f.message_type or f.enum_type
            expect(ref is not None and ref.name == typ.split(".")[-1],
                   f"{'.'.join(msgs)}.{name}: type {typ} here, {ref and ref.name} in Perfetto's")
        repeated = getattr(f, "is_repeated", None)
        if repeated is None:
            repeated = f.label == f.LABEL_REPEATED
        expect((label == "repeated") == repeated, f"{'.'.join(msgs)}.{name}: label differs")
        in_oneof = stack[-1][0] == "oneof"
        if in_oneof:
            expect(f.containing_oneof is not None and f.containing_oneof.name == stack[-1][1],
                   f"{'.'.join(msgs)}.{name}: not in oneof {stack[-1][1]} in Perfetto's")
        n_fields += 1
    expect(n_fields > 20, f"only {n_fields} fields read from {path}")
    return f"PROTOS OK: {n_fields} fields match Perfetto's published protos"


def main(argv):
    if len(argv) != 2 or argv[0] not in ("trace", "protos"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(compare(argv[1]) if argv[0] == "trace" else check_protos(argv[1]))
    except Failed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
