"""The benchmark suite (`make bench`): decision latency, compile time, memory, profile.

    .venv/bin/python bench/run.py            # the full run (about 6.5 minutes)
    .venv/bin/python bench/run.py --quick    # every count scaled down 10x (about a minute)

Measured, all in one process pinned to one core:

* per-decision latency (median, p99; time.perf_counter_ns around each call, after a warm-up)
  for the sample flow (rules/renewal: the durable engine, the reference evaluator, the whole
  Decider pipeline) and for generated rulesets of 10, 100 and 300 rules (bench/gen.py) on: the
  durable engine (DurableEngine.run), the reference evaluator, a plain Python if/else function
  (the floor) and zen-engine (a JDM decision);
* compile time: load_flow + compile_flow + DurableEngine creation;
* memory: RSS over 1,000,000 decisions on the 100-rule ruleset (sampled every 100,000), and over
  200,000 on the sample flow;
* a cProfile of DurableEngine.run, summarised by where the time goes;
* the error path: RSS and time per decision when every decision fails inside durable_rules
  (forced with a deliberately broken program, see `error_path`).

Before any timing, every engine must fire the same set of rules as the plain Python function on
every fact set (zen-engine included). A ruleset the compiler refuses (engine limits) is reported
with the compiler's message and not timed on durable; when the message asks for a lower
max_firings, the bench also tries the flow with max_firings 150.

zen-engine is called two ways: ZenEngine.evaluate(key, input) with a static loader (its fast
path; the "x zen" ratios use it) and create_decision(content).evaluate(input), which in the
2.1.3 Python binding starts OS threads on every call.

Results: a markdown report on stdout and bench/results.json.
"""
from __future__ import annotations

import argparse
import copy
import cProfile
import dataclasses
import gc
import importlib.metadata
import json
import math
import os
import platform
import pstats
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import zen  # noqa: E402

from engine.compile import limits  # noqa: E402
from engine.compile.durable import compile_flow  # noqa: E402
from engine.compile.reference import ReferenceEngine  # noqa: E402
from engine.decide import Decider  # noqa: E402
from engine.errors import RulesetError  # noqa: E402
from engine.facts import FactsModel, flatten  # noqa: E402
from engine.language.flows import Sources, load_flow  # noqa: E402
from engine.response import ResponseModels  # noqa: E402
from engine.session import DurableEngine  # noqa: E402
from gen import generate  # noqa: E402

SIZES = (10, 100, 300, 1000, 5000)
# the same generator holding about 10 firings per decision, so that rules, not firings, grow
CONSTANT_FIRINGS = ((100, 10), (1000, 10), (5000, 10))
FACT_SETS = 256
SAMPLE_VARIANTS = 64


# ---- machine -----------------------------------------------------------------------------------

def machine() -> dict:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(dist):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    def git(*args):
        try:
            import subprocess
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, ValueError):
            return None

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "engine_modified_since_commit": bool(git("status", "--porcelain", "--", "engine")),
        "nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
        "platform": platform.platform(), "durable_rules": version("durable_rules"),
        "zen_engine": version("zen-engine"),
    }


def _busy_ticks() -> dict:
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        parts = line.split()
        if parts and parts[0].startswith("cpu") and parts[0] != "cpu":
            ticks = list(map(int, parts[1:]))
            out[int(parts[0][3:])] = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    return out


def wait_for_quiet(limit_s: float = 30.0, threshold: float = 0.25) -> dict:
    """Wait (at most limit_s) until the whole machine is nearly idle for half a second: busy time
    of all cores together under `threshold` of one core. The machine is shared; this keeps a
    case's measurements out of another job's burst when it can. Returns what it saw."""
    waited, busy = 0.0, None
    while True:
        a = _busy_ticks()
        time.sleep(0.5)
        b = _busy_ticks()
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy = sum(b.get(c, 0) - a.get(c, 0) for c in b) / hz / 0.5
        waited += 0.5
        if busy < threshold or waited >= limit_s:
            return {"waited_s": round(waited, 1), "machine_busy_cores": round(busy, 2)}


def pin_one_core() -> int | None:
    """Pin this process to one core: of the cores it may run on, the least busy over half a second
    (the machine is shared; other jobs come and go, so this only avoids a core busy right now)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        try:
            a = _busy_ticks()
            time.sleep(0.5)
            b = _busy_ticks()
            cpu = min(cpus, key=lambda c: (b.get(c, 0) - a.get(c, 0), -c))
        except (OSError, ValueError):
            cpu = cpus[-1]
        os.sched_setaffinity(0, {cpu})
        return cpu
    except (AttributeError, OSError):
        return None


def loadavg() -> str | None:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


# ---- timing ------------------------------------------------------------------------------------

def _stats(samples: list, wall: int, cpu: int) -> dict:
    samples.sort()
    n = len(samples)
    return {
        "n": n,
        "median_us": round(statistics.median(samples) / 1000, 2),
        "p99_us": round(samples[min(n - 1, math.ceil(0.99 * n) - 1)] / 1000, 2),
        "mean_us": round(sum(samples) / n / 1000, 2),
        "min_us": round(samples[0] / 1000, 2),
        # CPU time / wall time over the timed calls: well under 1.0 means the core was shared with
        # other processes while measuring (or, for zen's per-call threads, time spent waiting)
        "cpu_share": round(cpu / wall, 2) if wall else None,
    }


def measure(fn, inputs: list, n: int, warmup: int) -> dict:
    """Time n calls fn(inputs[i % len]) one by one (after `warmup` untimed calls)."""
    return measure_group({"x": (fn, inputs)}, n, warmup, rounds=1)["x"]


def measure_group(entries: dict, n: int, warmup: int, rounds: int = 5) -> dict:
    """Time every entry (name -> (fn, inputs)) over n calls each, interleaved: `rounds` rounds,
    each timing n/rounds calls of every entry in turn, so that a burst of load from other
    processes on this shared machine falls on all the engines compared, not on one."""
    state = {}
    for name, (fn, inputs) in entries.items():
        for i in range(warmup):
            fn(inputs[i % len(inputs)])
        state[name] = {"samples": [], "wall": 0, "cpu": 0, "i": 0}
    pc, cpu_ns = time.perf_counter_ns, time.process_time_ns
    per_round = max(1, n // rounds)
    for _ in range(rounds):
        for name, (fn, inputs) in entries.items():
            st = state[name]
            size, start = len(inputs), st["i"]
            samples = [0] * per_round
            gc.collect()
            wall0, cpu0 = pc(), cpu_ns()
            for k in range(per_round):
                x = inputs[(start + k) % size]
                t0 = pc()
                fn(x)
                samples[k] = pc() - t0
            st["wall"] += pc() - wall0
            st["cpu"] += cpu_ns() - cpu0
            st["samples"].extend(samples)
            st["i"] = start + per_round
    return {name: _stats(st["samples"], st["wall"], st["cpu"]) for name, st in state.items()}


def timer_overhead(n: int) -> float:
    """Median cost of the measuring loop around a call that does nothing (ns)."""
    def nothing(x):
        return None
    return measure(nothing, [None], n, 100)["median_us"] * 1000


# ---- the error path ------------------------------------------------------------------------

def marker_first(program):
    """The compiled program with a `$nex __f<i>` refraction test right after the kind tag of every
    item's pattern (near the shape the compiler emitted before it put markers last). A part of 64
    items or more then overflows durable's 64-entry matching stack on every assert of a working
    fact (error 303): a reliable way to make every decision fail inside the extension, to measure
    what the error path costs. The kind tag stays first so the session's start-up fact (which no
    item matches) reaches none of the markers."""
    parts = []
    for part in program.parts:
        definition = {}
        for name, rule in part.definition.items():
            rule = copy.deepcopy(rule)
            m = rule["all"][0]["m"]
            tests = list(m["$and"]) if set(m) == {"$and"} else [m]
            tests = [t for t in tests if t != {"k": 1}
                     and not ("$nex" in t and next(iter(t["$nex"])).startswith("__f"))]
            rule["all"][0]["m"] = {"$and": [{"k": 1}, {"$nex": {f"__f{name[1:]}": 1}}] + tests}
            definition[name] = rule
        parts.append(dataclasses.replace(part, definition=definition))
    return dataclasses.replace(program, parts=parts)


def error_path(flow, wms, total: int) -> dict:
    """RSS and time per decision when every decision fails inside durable_rules (after 20 such
    decisions of warm-up): the engine then deletes its sessions and handles and builds fresh
    ones (engine/session.py, DurableEngine._recycle)."""
    program = marker_first(compile_flow(flow))
    engine = DurableEngine(flow, program)
    for i in range(20):  # warm-up, as for the other measurements: the allocator's first arenas
        try:
            engine.run(dict(wms[i % len(wms)]))
        except Exception:  # noqa: BLE001 - every one fails
            pass
    gc.collect()
    before = rss_kib()
    failures, error = 0, None
    t0 = time.perf_counter()
    for i in range(total):
        try:
            engine.run(dict(wms[i % len(wms)]))
        except Exception as exc:  # the engine's DecisionError("engine-error")
            failures += 1
            error = f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - t0
    after = rss_kib()
    engine.close()
    gc.collect()
    closed = rss_kib()
    return {"label": "generated 100 rules, refraction test forced after the kind tag (every decision fails in durable)",
            "decisions": total, "failures": failures, "error": error,
            "ms_per_decision": round(elapsed / total * 1000, 2), "rss_before_kib": before,
            "rss_after_kib": after, "rss_after_close_kib": closed, "growth_kib": after - before,
            "growth_kib_per_decision": round((after - before) / total, 1)}


def fired_ids(outcome) -> set:
    return {f["id"] for f in outcome.firings}


# ---- one engine on one case --------------------------------------------------------------------

class Case:
    """Engines built over one flow, checked against an oracle, then timed."""

    def __init__(self, name: str, n_rules: int | None):
        self.name = name
        self.n_rules = n_rules
        self.rows: list[dict] = []

    def row(self, engine: str, **kw) -> dict:
        r = {"case": self.name, "rules": self.n_rules, "engine": engine, **kw}
        self.rows.append(r)
        return r


def try_durable(flow, program=None):
    """(engine, None) or (None, 'error text')."""
    try:
        return DurableEngine(flow, program), None
    except Exception as exc:  # durable_rules_engine.error is not importable as a plain name
        return None, f"{type(exc).__module__}.{type(exc).__name__}: {exc}"


def try_compile(flow):
    """(program, None) or (None, the compiler's engine-limit messages)."""
    try:
        return compile_flow(flow), None
    except RulesetError as exc:
        return None, "; ".join(d.message for d in exc.diagnostics)


# ---- compile time ------------------------------------------------------------------------------

def compile_times(sources_fn, reps: int, jdm: str | None = None) -> dict:
    """Median ms of load_flow (from the files' text in memory: YAML parse, schema validation,
    lowering, static checks), compile_flow (including its engine-limit checks) and DurableEngine
    creation (create_ruleset); with `jdm`, also zen's create_decision for the same logic."""
    load, comp, create, zen_create = [], [], [], []
    refused = None
    for _ in range(reps):
        sources = sources_fn()  # the files' text, in memory: not timed
        t0 = time.perf_counter()
        flow = load_flow(sources)
        t1 = time.perf_counter()
        program, refused = try_compile(flow)
        t2 = time.perf_counter()
        load.append(t1 - t0)
        comp.append(t2 - t1)
        if program is not None:
            t3 = time.perf_counter()
            engine = DurableEngine(flow, program)
            create.append(time.perf_counter() - t3)
            engine.close()
        if jdm is not None:
            t5 = time.perf_counter()
            zen.ZenEngine().create_decision(jdm)
            zen_create.append(time.perf_counter() - t5)
    ms = lambda xs: round(statistics.median(xs) * 1000, 2) if xs else None  # noqa: E731
    out = {"load_flow_ms": ms(load), "compile_flow_ms": ms(comp), "engine_create_ms": ms(create),
           "total_ms": round(ms(load) + ms(comp) + ms(create), 2) if create else None, "reps": reps}
    if refused:
        out["refused"] = refused
    if zen_create:
        out["zen_create_decision_ms"] = ms(zen_create)
    return out


# ---- the sample flow ---------------------------------------------------------------------------

def sample_variants(example: dict, count: int, seed: int = 7) -> list[dict]:
    """The example facts plus seeded variations over the fields the rules read."""
    rng = random.Random(seed)
    out = [copy.deepcopy(example)]
    while len(out) < count:
        f = copy.deepcopy(example)
        a, c, s = f["account"], f["contract"], f["scores"]
        a["segment"] = rng.choice(["smb", "mid_market", "enterprise"])
        a["plan"] = rng.choice(["starter", "pro", "enterprise"])
        a["arr"] = round(rng.uniform(5_000, 900_000), 2)
        a["seat_utilisation"] = round(rng.uniform(0.3, 1.2), 2)
        a["nps"] = rng.randint(0, 10)
        a["seats"] = rng.randint(5, 800)
        if rng.random() < 0.3:
            del a["days_since_last_contact"]
        else:
            a["days_since_last_contact"] = rng.randint(0, 90)
        c["term_months"] = rng.choice([12, 24, 36])
        c["days_to_renewal"] = rng.randint(-20, 200)
        if rng.random() < 0.3:
            del c["requested_discount"]
        else:
            c["requested_discount"] = rng.choice([0, 5, 10, 15, 20, 25])
        f["usage"]["growth_90d"] = round(rng.uniform(-0.2, 0.6), 2)
        f["support"]["incidents_30d"] = rng.randint(0, 5)
        f["billing"]["days_overdue"] = rng.choice([0, 0, 0, 10, 45])
        s["churn_risk"] = round(rng.uniform(0, 1), 2)
        s["churn_risk_confidence"] = round(rng.uniform(0.4, 1), 2)
        s["upsell_propensity"] = round(rng.uniform(0, 1), 2)
        out.append(f)
    return out


def bench_sample(args, results) -> None:
    n, warm = args.decisions, args.warmup
    flow_dir = ROOT / "rules" / "renewal"
    sources_fn = lambda: Sources.from_dir(flow_dir)  # noqa: E731
    flow = load_flow(sources_fn())
    example = json.loads((ROOT / "examples" / "renewal-facts.json").read_text())
    decider = Decider(flow, responses=ResponseModels.from_dir(ROOT / "models" / "response"))
    facts = sample_variants(example, SAMPLE_VARIANTS)
    wms = [flatten(decider.facts.prepare(f)) for f in facts]
    items = len(compile_flow(flow).items)
    case = Case("sample (rules/renewal)", items)

    reference = ReferenceEngine(flow)
    durable = DurableEngine(flow)
    fired = []
    for wm in wms:
        want = [f["id"] for f in reference.run(dict(wm)).firings]
        got = [f["id"] for f in durable.run(dict(wm)).firings]
        assert got == want, f"sample: durable fired {got}, reference {want}"
        fired.append(len(want))
    mean_fired = round(sum(fired) / len(fired), 2)
    ex_fired = fired[0]

    results["quiet"][case.name] = wait_for_quiet()
    timed = measure_group({
        "durable": (lambda wm: durable.run(dict(wm)), wms),
        "durable, example": (lambda wm: durable.run(dict(wm)), wms[:1]),
        "reference": (lambda wm: reference.run(dict(wm)), wms),
        "Decider": (decider.decide, facts),
        "Decider, example": (decider.decide, facts[:1]),
        # one part of the pipeline, to show where Decider's time goes beyond the engine
        "prepare": (decider.facts.prepare, facts),
    }, n, warm)
    every, example = f"{SAMPLE_VARIANTS} fact sets", "examples/renewal-facts.json"
    case.row("durable", inputs=every, fired_mean=mean_fired, **timed["durable"])
    case.row("durable", inputs=example, fired_mean=ex_fired, **timed["durable, example"])
    case.row("reference", inputs=every, fired_mean=mean_fired, **timed["reference"])
    case.row("Decider (durable)", inputs=every, fired_mean=mean_fired, **timed["Decider"])
    case.row("Decider (durable)", inputs=example, fired_mean=ex_fired, **timed["Decider, example"])
    case.row("  of which facts.prepare", inputs=every, **timed["prepare"])
    results["latency"].extend(case.rows)
    results["compile"].append({"case": case.name, "rules": items, **compile_times(sources_fn, args.compile_reps)})
    results["profiles"].append({"label": "sample flow", **profile_run(durable, wms, args.profile_decisions),
                                "timed_split": timed_split(durable, wms, args.profile_decisions)})
    results["memory"].append(memory_run(durable, wms, args.sample_memory_decisions,
                                        max(args.sample_memory_decisions // 10, 1), "sample flow"))
    durable.close()
    decider.close()


# ---- generated rulesets ------------------------------------------------------------------------

def bench_generated(size: int, args, results, fired: float | None = None) -> None:
    n, warm = args.decisions, args.warmup
    if size >= 1000:  # each engine takes milliseconds per decision here: fewer calls
        n, warm = max(n // (10 if size < 5000 else 25), 50), max(warm // 10, 10)
    g = generate(size, fired=fired)
    flow = load_flow(g.sources())
    fm = FactsModel(flow.facts_schema)
    facts = g.fact_sets(FACT_SETS)
    wms = [flatten(fm.prepare(f)) for f in facts]
    plain = g.python_function()
    jdm = json.dumps(g.jdm())
    # zen-engine, two ways: ZenEngine.evaluate(key) with a static loader (the fast path) and
    # ZenDecision.evaluate (create_decision(content).evaluate(input)), which in the 2.1.3 binding
    # starts OS threads on every call (see docs/benchmarks.md)
    zen_engine = zen.ZenEngine({"loader": {"type": "static", "content": {"gen": json.loads(jdm)}}})
    decision = zen.ZenEngine().create_decision(jdm)
    reference = ReferenceEngine(flow)
    case = Case(f"generated {size}" + (f", ~{fired:g} fired" if fired else ""), size)
    info = {"rules": size, "derived_facts": len(g.derived), "fact_sets": len(facts),
            "kinds": {k: sum(1 for r in g.rules if r.kind == k) for k in ("setter_a", "setter_b", "reader", "plain")}}

    # the oracle is the plain Python function; every other engine must agree on every fact set
    expected = [set(plain(wm)) for wm in wms]
    for i, (f, wm) in enumerate(zip(facts, wms)):
        ref = fired_ids(reference.run(dict(wm)))
        assert ref == expected[i], f"{case.name} fact set {i}: reference {sorted(ref)} != plain {sorted(expected[i])}"
        z = {r["id"] for r in zen_engine.evaluate("gen", f)["result"]["fired"]}
        assert z == expected[i], f"{case.name} fact set {i}: zen {sorted(z)} != plain {sorted(expected[i])}"
        z = {r["id"] for r in decision.evaluate(f)["result"]["fired"]}
        assert z == expected[i], f"{case.name} fact set {i}: ZenDecision {sorted(z)} != plain {sorted(expected[i])}"
    mean_fired = round(sum(map(len, expected)) / len(expected), 2)
    info.update(fired_mean=mean_fired, fired_fraction=round(mean_fired / size, 3))

    # the durable engine: as generated; if refused for max_firings, once more with max_firings 150
    engine, flow_used, label = None, flow, "durable"
    program, refused = try_compile(flow)
    if refused:
        case.row("durable", fired_mean=mean_fired, refused=refused)
        info["durable_refused"] = refused
        if "max_firings" in refused:
            g.max_firings = 150
            flow_used = load_flow(g.sources())
            program, refused = try_compile(flow_used)
            label = "durable (max_firings 150)"
            if refused:
                case.row(label, fired_mean=mean_fired, refused=refused)
                info["durable_refused_max_firings_150"] = refused
    entries = {}
    if program is not None:
        engine = DurableEngine(flow_used, program)
        for i, wm in enumerate(wms):
            got = fired_ids(engine.run(dict(wm)))
            assert got == expected[i], f"{case.name} durable fact set {i}: {sorted(got)} != {sorted(expected[i])}"
        info["parts"] = [len(p.items) for p in program.parts]
        info["stack_bound"] = max(limits.stack_bound(p.definition) for p in program.parts)
        entries[label] = (lambda wm: engine.run(dict(wm)), wms)
    entries["reference"] = (lambda wm: reference.run(dict(wm)), wms)
    entries["plain python"] = (plain, wms)
    entries["zen-engine"] = (lambda f: zen_engine.evaluate("gen", f), facts)
    if size < 1000:  # the thread-per-call path; the comparison uses the other one
        entries["zen (ZenDecision.evaluate)"] = (decision.evaluate, facts)
    results["quiet"][case.name] = wait_for_quiet()
    timed = measure_group(entries, n, warm)
    apis = {"zen-engine": "ZenEngine.evaluate(key) with a static loader",
            "zen (ZenDecision.evaluate)": "create_decision(content).evaluate(input)"}
    for name, stats in timed.items():
        extra = {"api": apis[name]} if name in apis else {}
        case.row(name, fired_mean=mean_fired, **extra, **stats)
    results["latency"].extend(case.rows)
    g.max_firings = None
    reps = args.compile_reps if size < 1000 else 1
    results["compile"].append({"case": case.name, "rules": size, **compile_times(g.sources, reps, jdm=jdm)})
    info["agreement"] = (f"plain == reference == zen-engine (both APIs)"
                         f"{' == durable' if engine is not None else ''} on all {len(facts)} fact sets")
    results["generated"][case.name] = info

    if size == 100 and fired is None:
        if engine is not None:
            print("  profile and 1M-decision memory run ...", file=sys.stderr)
            results["profiles"].append({"label": "generated 100 rules",
                                        **profile_run(engine, wms, args.profile_decisions),
                                        "timed_split": timed_split(engine, wms, args.profile_decisions)})
            results["memory"].append(memory_run(engine, wms, args.memory_decisions, args.memory_every,
                                                "generated 100 rules"))
        print("  error path ...", file=sys.stderr)
        results["error_path"] = error_path(flow, wms, args.error_decisions)
    if engine is not None:
        engine.close()


# ---- memory ------------------------------------------------------------------------------------

def memory_run(engine, wms, total: int, every: int, label: str) -> dict:
    size = len(wms)
    for i in range(min(10_000, total // 10)):  # warm-up: allocator pools and caches reach steady state
        engine.run(dict(wms[i % size]))
    gc.collect()
    samples = [{"decisions": 0, "rss_kib": rss_kib()}]
    t0 = time.perf_counter()
    for i in range(1, total + 1):
        engine.run(dict(wms[i % size]))
        if i % every == 0:
            samples.append({"decisions": i, "rss_kib": rss_kib()})
    elapsed = time.perf_counter() - t0
    gc.collect()
    first, last = samples[0]["rss_kib"], samples[-1]["rss_kib"]
    return {"label": label, "decisions": total, "seconds": round(elapsed, 1), "samples": samples,
            "rss_before_kib": first, "rss_after_kib": last, "rss_after_gc_kib": rss_kib(),
            "growth_kib": last - first, "growth_bytes_per_decision": round((last - first) * 1024 / total, 3)}


# ---- profile -----------------------------------------------------------------------------------

def profile_run(engine, wms, n: int) -> dict:
    """cProfile n DurableEngine.run calls; the time split over the direct parts of _run."""
    size = len(wms)
    inputs = [dict(wms[i % size]) for i in range(n)]
    prof = cProfile.Profile()
    prof.enable()
    for wm in inputs:
        engine.run(wm)
    prof.disable()
    st = pstats.Stats(prof)
    total = 0.0
    parts = {"durable_rules_engine calls": 0.0, "JSON encoding of the working fact": 0.0,
             "rule firings (engine.actions.fire: outcome records, templates, expressions, tables)": 0.0,
             "working-fact upkeep (Part.document / update)": 0.0}
    durable_calls = {}
    top = []
    for (file, line, func), (cc, nc, tt, ct, callers) in st.stats.items():
        if func in ("_run", "_run_static") and file.endswith("session.py"):
            total = ct
        if "durable_rules_engine" in func:
            parts["durable_rules_engine calls"] += ct
            durable_calls[func.replace("<built-in method durable_rules_engine.", "").rstrip(">")] = {
                "calls": nc, "ms": round(ct * 1000, 1)}
        elif func in ("durable_json", "_dumps", "fact_json") and file.endswith("durable.py"):
            parts["JSON encoding of the working fact"] += ct
        elif func in ("fire_rule", "_fire_table") and file.endswith(os.path.join("engine", "actions.py")):
            parts["rule firings (engine.actions.fire: outcome records, templates, expressions, tables)"] += ct
        elif func in ("document", "update") and file.endswith(os.path.join("compile", "durable.py")):
            parts["working-fact upkeep (Part.document / update)"] += ct
        top.append((tt, nc, f"{Path(file).name}:{line}({func})" if file != "~" else func))
    if not parts["JSON encoding of the working fact"]:
        # older session.py: the encoder's bound `encode` method is called directly
        for (file, line, func), (cc, nc, tt, ct, callers) in st.stats.items():
            if func == "encode" and file.endswith(os.path.join("json", "encoder.py")):
                parts["JSON encoding of the working fact"] += ct
    top.sort(reverse=True)
    rest = total - sum(parts.values())
    split = {k: {"ms": round(v * 1000, 1), "share": round(v / total, 3) if total else None} for k, v in parts.items()}
    split["the rest of _run (agenda loop, refraction, bookkeeping)"] = {
        "ms": round(rest * 1000, 1), "share": round(rest / total, 3) if total else None}
    return {
        "decisions": n, "profiled_ms_per_decision": round(total / n * 1000, 3),
        "split": split, "durable_calls": durable_calls,
        "top_self_time": [{"function": f, "calls": c, "self_ms": round(t * 1000, 1)} for t, c, f in top[:15]],
    }


def timed_split(engine, wms, n: int) -> dict:
    """Where one DurableEngine.run spends its time, without cProfile's distortion: the session
    module's collaborators (the durable calls, the JSON encoder, fire, the working-fact upkeep)
    are wrapped, for this measurement only, in perf_counter_ns timers (about 0.1 µs per call)."""
    import types
    from engine import session

    pc = time.perf_counter_ns
    acc: dict = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t0 = pc()
            try:
                return fn(*a, **kw)
            finally:
                acc[name] = acc.get(name, 0) + pc() - t0
        return wrapper

    from engine.compile.durable import Part

    real_dre, real_fires, real_json = session._dre, engine.fires, session.fact_json
    proxy = types.SimpleNamespace(**{k: getattr(real_dre, k) for k in dir(real_dre) if not k.startswith("__")})
    for name in ("assert_fact", "retract_fact", "start_action_for_state", "complete_and_start_action",
                 "delete_state"):
        setattr(proxy, name, timed("durable_rules_engine calls", getattr(real_dre, name)))
    real_document, real_update = Part.document, Part.update
    session._dre = proxy
    engine.fires = [timed("rule firings (engine.actions.firing)", f) for f in real_fires]
    session.fact_json = timed("JSON encoding of the working fact", real_json)
    Part.document = timed("working-fact upkeep (document / update)", real_document)
    Part.update = timed("working-fact upkeep (document / update)", real_update)
    try:
        size = len(wms)
        inputs = [dict(wms[i % size]) for i in range(n)]
        total = 0
        for wm in inputs:
            t0 = pc()
            engine.run(wm)
            total += pc() - t0
    finally:
        session._dre, engine.fires, session.fact_json = real_dre, real_fires, real_json
        Part.document, Part.update = real_document, real_update
    per = {k: round(v / n / 1000, 1) for k, v in acc.items()}
    per["the rest of run (agenda loop, refraction, lock, bookkeeping)"] = round((total - sum(acc.values())) / n / 1000, 1)
    return {"decisions": n, "us_per_decision": round(total / n / 1000, 1), "parts_us": per}


# ---- report ------------------------------------------------------------------------------------

def ratio(a, b):
    return f"{a / b:.1f}x" if a is not None and b else "-"


def report(results) -> str:
    lines = []
    m, st = results["machine"], results["settings"]
    lines.append(f"# postsale benchmarks ({'quick' if st['quick'] else 'full'} run)\n")
    lines.append(f"commit {m.get('commit')}{' (engine/ modified)' if m.get('engine_modified_since_commit') else ''}; "
                 f"{m['cpu_model']}, nproc {m['nproc']}, pinned to cpu {st['pinned_cpu']}; Python {m['python']}, "
                 f"durable_rules {m['durable_rules']}, zen-engine {m['zen_engine']}; {st['decisions']} timed decisions "
                 f"per row after {st['warmup']} warm-up, the engines of a case interleaved in 5 rounds; timer+call overhead {st['timer_overhead_ns']:.0f} ns; load "
                 f"average {st['loadavg_start']} at start, {st.get('loadavg_end')} at end; {st.get('cpu_s')} s CPU "
                 f"in {st.get('elapsed_s')} s\n")
    lines.append("## Per-decision latency (µs)\n")
    lines.append("`x zen`: against zen-engine's ZenEngine.evaluate(key) path. `cpu share`: CPU time / wall time "
                 "over the timed loop (below ~0.9: the core was shared, or the engine waited on threads).\n")
    lines.append("| case | engine | inputs | fired/decision | median | p99 | x plain | x zen | cpu share |")
    lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
    base = {(r["case"], r["engine"]): r["median_us"] for r in results["latency"]
            if r["engine"] in ("plain python", "zen-engine")}
    for r in results["latency"]:
        plain = base.get((r["case"], "plain python"))
        z = base.get((r["case"], "zen-engine"))
        if "refused" in r:
            lines.append(f"| {r['case']} | {r['engine']} | | {r.get('fired_mean', '')} | **refused** | | | | |")
            continue
        lines.append(f"| {r['case']} | {r['engine']} | {r.get('inputs', f'{FACT_SETS} fact sets')} | "
                     f"{r.get('fired_mean', '')} | {r['median_us']:.1f} | {r['p99_us']:.1f} | "
                     f"{ratio(r['median_us'], plain)} | {ratio(r['median_us'], z)} | {r['cpu_share']} |")
    quiet = results.get("quiet") or {}
    if quiet:
        lines.append("\nBefore each case the bench waited (at most 30 s) for the machine to be idle: " + "; ".join(
            f"{k}: waited {v['waited_s']} s, then {v['machine_busy_cores']} cores busy" for k, v in quiet.items()))
    refused = [r for r in results["latency"] if "refused" in r]
    if refused:
        lines.append("")
        for r in refused:
            lines.append(f"- {r['case']}, {r['engine']}: refused by the compiler: {r['refused']}")
    lines.append("\n## Compile time (ms; median of %d)\n" % st["compile_reps"])
    lines.append("| case | load_flow | compile_flow | DurableEngine() | total | zen create_decision |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for c in results["compile"]:
        create = c["engine_create_ms"] if c["engine_create_ms"] is not None else "refused"
        lines.append(f"| {c['case']} | {c['load_flow_ms']} | {c['compile_flow_ms']} | {create} | "
                     f"{c['total_ms'] if c['total_ms'] is not None else '-'} | {c.get('zen_create_decision_ms', '')} |")
    lines.append("\n## Memory (RSS, KiB)\n")
    for mem in results["memory"]:
        lines.append(f"**{mem['label']}**: {mem['decisions']:,} decisions in {mem['seconds']} s; RSS "
                     f"{mem['rss_before_kib']:,} → {mem['rss_after_kib']:,} KiB "
                     f"({mem['growth_kib']:+,} KiB, {mem['growth_bytes_per_decision']} B/decision)\n")
        lines.append("| decisions | " + " | ".join(f"{s['decisions']:,}" for s in mem["samples"]) + " |")
        lines.append("|---|" + "---:|" * len(mem["samples"]))
        lines.append("| RSS KiB | " + " | ".join(f"{s['rss_kib']:,}" for s in mem["samples"]) + " |\n")
    ep = results.get("error_path")
    if ep:
        lines.append(f"**Error path** ({ep['label']}): {ep['failures']} of {ep['decisions']} decisions failed "
                     f"({ep['error']}); {ep['ms_per_decision']} ms per decision; RSS {ep['rss_before_kib']:,} → "
                     f"{ep['rss_after_kib']:,} KiB (+{ep['growth_kib_per_decision']:,} KiB per failed decision), "
                     f"{ep['rss_after_close_kib']:,} KiB after close()\n")
    for p in results["profiles"]:
        lines.append(f"## Profile: DurableEngine.run, {p['label']}\n")
        lines.append(f"{p['decisions']} decisions under cProfile, {p['profiled_ms_per_decision']} ms per decision "
                     "profiled (cProfile inflates Python-level calls more than C calls)\n")
        lines.append("| part of DurableEngine.run | ms | share |")
        lines.append("|---|---:|---:|")
        for k, v in p["split"].items():
            lines.append(f"| {k} | {v['ms']} | {v['share']:.0%} |")
        ts = p.get("timed_split")
        if ts:
            lines.append(f"\nWithout the profiler (each part wrapped in a perf_counter_ns timer, {ts['decisions']} "
                         f"decisions): {ts['us_per_decision']} µs per decision\n")
            lines.append("| part | µs per decision | share |")
            lines.append("|---|---:|---:|")
            for k, v in ts["parts_us"].items():
                lines.append(f"| {k} | {v} | {v / ts['us_per_decision']:.0%} |")
        lines.append("\n| durable call | calls | ms |")
        lines.append("|---|---:|---:|")
        for k, v in sorted(p["durable_calls"].items(), key=lambda kv: -kv[1]["ms"]):
            lines.append(f"| {k} | {v['calls']:,} | {v['ms']} |")
        lines.append("")
    lines.append("## Aims\n")
    for a in results["aims"]:
        lines.append(f"- {'MET' if a['met'] else 'NOT MET'}: {a['aim']} — {a['detail']}")
    return "\n".join(lines) + "\n"


def aims(results) -> list[dict]:
    lat = {(r["case"], r["engine"]): r for r in results["latency"]}
    out = []
    durable = lat.get(("generated 100", "durable"))
    zen_r = lat.get(("generated 100", "zen-engine"))
    if durable is None or "median_us" not in durable:
        why = durable.get("refused", "not measured") if durable else "not measured"
        out.append({"aim": "100 rules: median under 100 µs on one core", "met": False, "detail": f"refused: {why}"})
        out.append({"aim": "100 rules: within 1.5x of zen-engine", "met": False, "detail": f"refused: {why}"})
    else:
        out.append({"aim": "100 rules: median under 100 µs on one core", "met": durable["median_us"] < 100,
                    "detail": f"median {durable['median_us']} µs (p99 {durable['p99_us']} µs)"})
        out.append({"aim": "100 rules: at most 1.0x zen-engine",
                    "met": durable["median_us"] <= zen_r["median_us"],
                    "detail": f"{ratio(durable['median_us'], zen_r['median_us'])} of zen-engine's "
                              f"{zen_r['median_us']} µs"})
        out.append({"aim": "100 rules: within 1.5x of zen-engine",
                    "met": durable["median_us"] <= 1.5 * zen_r["median_us"],
                    "detail": f"{ratio(durable['median_us'], zen_r['median_us'])} of zen-engine's "
                              f"{zen_r['median_us']} µs"})
    for size in (1000, 5000):
        r = lat.get((f"generated {size}", "durable"))
        ok = r is not None and "median_us" in r
        out.append({"aim": f"{size} rules compile and decide, agreeing with the reference and plain Python",
                    "met": ok, "detail": f"median {r['median_us']} µs" if ok else "not measured"})
    small = lat.get(("generated 100, ~10 fired", "durable"))
    big = lat.get(("generated 1000, ~10 fired", "durable"))
    if small and big and "median_us" in small and "median_us" in big:
        out.append({"aim": "about 10 firings per decision: 1,000 rules within 2x the 100-rule time",
                    "met": big["median_us"] <= 2 * small["median_us"],
                    "detail": f"{big['median_us']} µs against {small['median_us']} µs "
                              f"({ratio(big['median_us'], small['median_us'])})"})
    for mem in results["memory"]:
        # flat: after the warm-up, growth under 1% of RSS (and under 8 MiB per million decisions)
        growth = mem["growth_kib"]
        flat = growth <= min(8 * 1024 * mem["decisions"] / 1_000_000, mem["rss_before_kib"] * 0.01)
        out.append({"aim": f"memory flat over {mem['decisions']:,} decisions: {mem['label']}", "met": flat,
                    "detail": f"{growth:+,} KiB ({mem['growth_bytes_per_decision']} B/decision)"})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="postsale benchmarks")
    ap.add_argument("--quick", action="store_true", help="scale every count down 10x")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one core")
    args = ap.parse_args(argv)
    scale = 10 if args.quick else 1
    args.decisions = 5000 // scale
    args.warmup = 1000 // scale
    args.compile_reps = 5 if not args.quick else 2
    args.profile_decisions = 2000 // scale
    args.memory_decisions = 1_000_000 // scale
    args.memory_every = 100_000 // scale
    args.sample_memory_decisions = 200_000 // scale
    args.error_decisions = 200 // scale

    pinned = None if args.no_pin else pin_one_core()
    started, cpu_started = time.perf_counter(), time.process_time()
    results = {
        "machine": machine(),
        "settings": {"quick": args.quick, "pinned_cpu": pinned, "decisions": args.decisions, "warmup": args.warmup,
                     "compile_reps": args.compile_reps, "fact_sets": FACT_SETS,
                     "gc": "enabled (collected before each measurement)", "loadavg_start": loadavg()},
        "latency": [], "compile": [], "generated": {}, "memory": [], "profiles": [], "quiet": {},
    }
    results["settings"]["timer_overhead_ns"] = timer_overhead(args.decisions)
    print(f"pinned to cpu {pinned}; {args.decisions} timed decisions per row", file=sys.stderr)

    print("sample flow ...", file=sys.stderr)
    bench_sample(args, results)
    for size in SIZES:
        print(f"generated {size} rules ...", file=sys.stderr)
        bench_generated(size, args, results)
    for size, fired in CONSTANT_FIRINGS:
        print(f"generated {size} rules, about {fired} fired ...", file=sys.stderr)
        bench_generated(size, args, results, fired)

    results["aims"] = aims(results)
    results["settings"]["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["settings"]["cpu_s"] = round(time.process_time() - cpu_started, 1)
    results["settings"]["loadavg_end"] = loadavg()
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(report(results))
    print(f"(written {args.out}; {results['settings']['elapsed_s']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
