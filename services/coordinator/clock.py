"""The window clock (PROTOCOL.md §3, §7): grants windows with RUN, collects every node's
STEP_DONE (a copy of its outputs, off the critical path: the data itself went node to node),
records completed windows in order, takes checkpoints at consistent cuts and ends the run.

A node runs a granted window as soon as its inputs have arrived, so the coordinator grants
far ahead (to the end of the run, or to the next checkpoint's window) instead of once per
window: it is the clock of the run, not a step in every window's path.
"""
from __future__ import annotations

import contextlib
import logging
import time

from cosim.runtime import checkpoint
from cosim.errors import RunFailed
from cosim.runtime.store import ResultsWriteError, os_reason
from cosim.proto.messages import Message, MessageType as T
from cosim.proto.signals import is_event, split_events
from cosim.services.coordinator import routing
from cosim.services.coordinator.record import RunRecord
from cosim.services.coordinator.state import CoordinatorState

log = logging.getLogger(__name__)

# with time-based checkpoints (`run.checkpoint.every_s`) windows are granted this many at a time,
# so that a cut can be placed soon after the time has come
GRANT_CHUNK = 64


class ClockMixin(CoordinatorState):
    """Windows: RUN grants, STEP_DONE copies, recording, checkpoints, END."""

    @contextlib.contextmanager
    def _writing(self):
        """A results write that fails (disk full, I/O error) ends the run with the cause; the file
        was rolled back to its last durable window (cosim.runtime.store.Appender.flush)."""
        try:
            yield
        except ResultsWriteError as e:
            raise RunFailed(f"cannot write results: {e}") from None
        except OSError as e:
            raise RunFailed(f"cannot write results in {self.results_dir}: {os_reason(e)}") from None

    def start_run(self) -> None:
        first = 0
        with self._writing():
            if self.resume:
                first = self._resume_record()
            else:
                self.record = RunRecord(self.results_dir / "coordinator.h5", self.plan, self.W, self.K,
                                        self.tvb_dt_ms, self.cfg, list(self.peers), on_flush=self._flushed)
        self._flushed(first)
        # whose cycle_s is the window's wall time (complete_window)
        self.tvb_name = next((p.name for p in self.peers.values() if p.role == "tvb"), None)
        self.state, self.t_start = "RUNNING", time.monotonic()
        self.startup.mark("results files")
        self.startup_report, self.first_window_at = self.startup.report(), time.time()
        self._last_progress = -1.0
        self._last_ckpt_t = time.monotonic()
        self.window = first                     # the next window to complete (all before it are recorded)
        self.t_window = time.perf_counter()
        self.until = -1
        for p in self.peers.values():
            p.done = first - 1
        self.publish("event", {"event": "started", "windows": self.K, "steps_per_window": self.W})
        log.info("coordinator: all %d nodes ready; running %d windows%s (lag %d)", len(self.peers), self.K,
                 f" from window {first} (resumed)" if first else "", self.lag)
        if self.resume:
            self.send_in_flight(first)
        self.grant()

    def _resume_record(self) -> int:
        """Resume (§10.1): coordinator.h5 cut back to window k, the data in flight at the checkpoint
        (outputs of windows k-m+1..k) restored; returns k + 1, the first window to run."""
        m = self.resume
        assert m is not None
        k = m["window"]
        checkpoint.drop_newer(self.results_dir, k)
        c = m["coordinator"]
        checkpoint.truncate_h5(self.results_dir / "coordinator.h5", c["rows"], libver="latest")
        self.record = RunRecord(self.results_dir / "coordinator.h5", self.plan, self.W, self.K, self.tvb_dt_ms,
                                self.cfg, list(self.peers), on_flush=self._flushed, resume_windows=k + 1)
        self.record.sums.update({n: list(v) for n, v in c["timing_sums"].items() if n in self.record.sums})
        self.record.wall_sum, self.record.k = float(c["wall_sum"]), k + 1
        self.rejects.counts.update(c.get("rejected") or {})
        for key, arr in checkpoint.load_arrays(checkpoint.folder(self.results_dir, k) / "coordinator.npz").items():
            node, j, name = key.split("|", 2)
            self.copies.setdefault(node, {}).setdefault(int(j), {})[name] = arr
        return k + 1

    def send_in_flight(self, first: int) -> None:
        """Every consumer's DATA of windows first-m .. first-1 from the coordinator's copies: after a
        resume (the consumers are new processes) the data in flight at the cut."""
        for consumer in self.peers:
            for j in range(first - self.lag, first):
                for producer in self.plan.outputs:
                    self.resend_data(consumer, producer, j)

    def resend_data(self, consumer: str, producer: str, j: int) -> bool:
        """DATA of window j from producer to consumer, made from the coordinator's copy (§8)."""
        sigs = routing.data_for(self.plan, producer, consumer, self.copies.get(producer, {}).get(j))
        if sigs is None:
            return False
        peer = self.peers[consumer]
        self._next_id += 1
        self._send_to(peer.routing_id, Message(T.DATA, {"signals": sigs}, node=producer, window=j, msg_id=self._next_id))
        return True

    def grant_limit(self) -> int:
        """The last window nodes may run now: the end, or the next checkpoint's window (a cut)."""
        limit = self.K - 1
        c = self.cfg.run.checkpoint
        if c is not None:
            if c.every_windows:
                n = c.every_windows
                nxt = ((self.window + n) // n) * n - 1        # smallest c >= window with (c+1) % n == 0
                limit = min(limit, nxt if nxt >= self.window else nxt + n)
            if c.every_s:
                if self.time_cut is not None:
                    limit = min(limit, self.time_cut)
                else:
                    limit = min(limit, self.window + GRANT_CHUNK)
        return limit

    def grant(self) -> None:
        limit = self.grant_limit()
        if limit > self.until:
            self.until = limit
            for p in self.peers.values():
                self.send(p, T.RUN, {"first": p.done + 1, "until": limit})

    def on_step_done(self, peer, msg: Message) -> None:
        """A node's copies of windows `first`..k (one, or a batch: §4.1), in order."""
        k = msg.window
        assert k is not None                    # STEP_DONE carries its window (checked by the codec)
        c = msg.content
        first = c.get("first", k)
        if self.state in ("RUNNING", "FINISHING") and k <= peer.done:
            # already received: a STEP_DONE sent again after a repeated RUN (§8); no ERROR, which would end the node
            self.rejects.reject("DuplicateStepDone", f"{msg!r}; node done {peer.done}", peer.name)
            return
        if self.state != "RUNNING" or k > self.until or not 0 <= first <= k:
            return self.unexpected(peer, msg)
        n = k - first + 1
        outputs = c["outputs"]
        why = routing.check_outputs(self.plan.outputs[peer.name], outputs, n * self.W)
        if why:
            raise RunFailed(self.where(peer.name, f"bad outputs{f' (windows {first}..{k})' if n > 1 else ''}: {why}"))
        if first > peer.done + 1:
            # the STEP_DONE of window done+1 never came (lost with a reset connection: a DEALER keeps
            # order), or a misbehaving node sends windows it has not run: keep nothing out of order,
            # ask the node once to send again from done+1 (§8); no ERROR, which would end the node
            self.rejects.reject("StepDoneAfterGap", f"{msg!r}; expected window {peer.done + 1}", peer.name)
            if peer.asked != peer.done + 1:
                peer.asked = peer.done + 1
                self.resent += 1
                self.send(peer, T.RUN, {"first": peer.done + 1, "until": self.until})
            return
        timing = c.get("timing")
        timings = timing if isinstance(timing, list) and len(timing) == n else [timing] * n
        copies = self.copies.setdefault(peer.name, {})
        W = self.W
        events = {}                     # spikes (§4.2): a (n, 4) block per batch, split per window
        for spec in self.plan.outputs[peer.name]:
            if is_event(spec.name):
                per, why = split_events(outputs.get(spec.name), n, len(spec.regions), W * self.tvb_dt_ms)
                if why or per is None:
                    raise RunFailed(self.where(peer.name, f"bad outputs: output {spec.name!r} {why}"))
                events[spec.name] = per
        for j in range(peer.done + 1, k + 1):      # windows already in (a resent batch) are skipped
            i = j - first
            copies[j] = {name: events[name][i] if name in events else (a if n == 1 else a[i * W:(i + 1) * W])
                         for name, a in outputs.items() if name in events or not is_event(name)}
            t = timings[i]
            self.timing.setdefault(j, {})[peer.name] = t if isinstance(t, dict) else {}
            if isinstance(t, dict):       # the adaptive window timeout follows the longest window (§8)
                c_s = t.get("cycle_s", t.get("compute_s"))
                if isinstance(c_s, (int, float)) and 0 < c_s < 1e6:
                    self.longest_window_s = max(self.longest_window_s, float(c_s))
        peer.done = k
        while self.state == "RUNNING" and all(p.done >= self.window for p in self.peers.values()):
            self.complete_window(self.window)

    def complete_window(self, k: int) -> None:
        """Every node finished window k: record it, checkpoint or end if due, publish progress."""
        now = time.perf_counter()
        wall, self.t_window = now - self.t_window, now
        produced = {n: c[k] for n, c in self.copies.items() if k in c}
        timing = self.timing.pop(k, {})
        cycle = (timing.get(self.tvb_name or "") or {}).get("cycle_s")
        if isinstance(cycle, (int, float)) and 0 <= cycle < 1e9:
            # copies arrive in batches (§4.1), so the window's wall time is the TVB node's cycle
            # (end of its window k-1 to end of window k; in lockstep every node's averages the same)
            wall = float(cycle)
        self._last_wall_s = wall
        self.window = k + 1
        for c in self.copies.values():          # keep what a consumer may still need (lag) or a resume
            for j in [j for j in c if j <= k - self.lag]:
                del c[j]
        assert self.record is not None and self.t_start is not None
        with self._writing():
            self.record.append(k, produced, timing, wall, float("nan"))
        if k + 1 == self.K:
            self.state = "FINISHING"
            self.t_end = time.monotonic()
            for p in self.peers.values():
                self.send(p, T.END, {"reason": "completed"})
        elif self._checkpoint_due(k):
            self.begin_checkpoint(k)
        elif k == self.until:
            self.grant()
        elif self.cfg.run.checkpoint is not None and self.until - k < GRANT_CHUNK // 2:
            self.grant()
        elapsed = time.monotonic() - self.t_start
        sim_ms = (k + 1) * self.W * self.tvb_dt_ms
        if elapsed - self._last_progress >= 0.1 or k + 1 == self.K:   # observers need ~10 updates/s, not one per window
            self._last_progress = elapsed
            if self.progress:
                self.progress(k + 1, self.K, sim_ms, elapsed)
            self.publish("progress", self.progress_content(k, sim_ms, elapsed, produced, timing), window=k)

    # ------------------------------------------------------------------ checkpoints (§10.1)
    def _checkpoint_due(self, k: int) -> bool:
        c = self.cfg.run.checkpoint
        if c is None or k + 1 >= self.K:
            return False
        if c.every_s and self.time_cut is None and time.monotonic() - self._last_ckpt_t >= c.every_s:
            self.time_cut = self.until          # nodes are granted up to here: the cut is there
        return bool((c.every_windows and (k + 1) % c.every_windows == 0) or (self.time_cut == k))

    def begin_checkpoint(self, k: int) -> None:
        """After window k's last STEP_DONE: every node is idle at the end of its grant (window k);
        the data in flight (outputs of windows k-m+1..k) is held by the consumers and by the
        coordinator; every node writes its state."""
        t0 = time.perf_counter()
        assert self.record is not None
        with self._writing():
            self.record.rec.flush()         # coordinator.h5 holds windows 0..k
        try:
            checkpoint.begin(self.results_dir, k)
        except OSError as e:
            raise RunFailed(f"cannot write the checkpoint of window {k}: {os_reason(e)}") from None
        self.ckpt = {"window": k, "pending": set(self.peers), "nodes": {}, "t0": t0}
        for p in self.peers.values():
            self.send(p, T.CHECKPOINT, {"window": k, "dir": checkpoint.rel_folder(k)})

    def on_checkpointed(self, peer, msg: Message) -> None:
        c = msg.content
        if self.ckpt is None or c["window"] != self.ckpt["window"] or peer.name not in self.ckpt["pending"]:
            if self.ckpt is not None and c.get("window") == self.ckpt["window"]:
                return            # a repeated CHECKPOINT's second answer (§8)
            return self.unexpected(peer, msg)
        self.ckpt["nodes"][peer.name] = {"files": [str(f) for f in c["files"]], "sha256": dict(c["sha256"]),
                                         "rows": c["rows"], **(c.get("info") or {})}
        self.ckpt["pending"].discard(peer.name)
        if not self.ckpt["pending"]:
            self.finish_checkpoint()

    def finish_checkpoint(self) -> None:
        ck = self.ckpt
        assert ck is not None and self.record is not None and self.cfg.run.checkpoint is not None
        k = ck["window"]
        rel = checkpoint.rel_folder(k)
        try:
            in_flight = {f"{node}|{j}|{name}": arr for node, c in self.copies.items() for j, sigs in c.items()
                         if k - self.lag < j <= k for name, arr in sigs.items()}
            files = {f"{rel}/coordinator.npz": checkpoint.save_arrays(
                checkpoint.folder(self.results_dir, k) / "coordinator.npz", in_flight)}
            for node in ck["nodes"].values():
                files.update({f"{rel}/{f}": node["sha256"][f] for f in node["files"]})
            rec = self.record
            cost = time.perf_counter() - ck["t0"]
            checkpoint.write_manifest(self.results_dir, k, {
                "format": checkpoint.FORMAT, "window": k, "config_sha256": self.config_sha256,
                "inputs": self.input_hashes, "watch_regions": list(self.cc.watch_regions),
                "steps_per_window": self.W, "n_windows": self.K, "lag": self.lag, "files": files,
                "nodes": ck["nodes"],
                "coordinator": {"rows": {n: int(d.shape[0]) for n, d in rec.rec.ds.items()},
                                "timing_sums": rec.sums, "wall_sum": rec.wall_sum,
                                "rejected": dict(self.rejects.counts)},
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "cost_s": cost})
            checkpoint.prune(self.results_dir, self.cfg.run.checkpoint.keep, k)
        except OSError as e:
            raise RunFailed(f"cannot write the checkpoint of window {k}: {os_reason(e)}") from None
        cost = time.perf_counter() - ck["t0"]
        self.ckpt_costs.append(cost)
        log.info("coordinator: checkpoint of window %d written in %.1f ms", k, cost * 1e3)
        self.ckpt = None
        self.time_cut = None
        self._last_ckpt_t = time.monotonic()
        self.t_window = time.perf_counter()     # the checkpoint is not the next window's wall time
        self.grant()

    def on_finished(self, peer, msg: Message) -> None:
        if self.state not in ("FINISHING", "DONE"):
            return self.unexpected(peer, msg)
        self.send(peer, T.FINISHED, {}, parent=msg)      # the acknowledgement (§8); again for a repeat
        if peer.state == "finished":
            return
        peer.state = "finished"
        peer.info["summary"] = msg.content.get("summary") or {}
        if all(p.state == "finished" for p in self.peers.values()):
            self.state = "DONE"
            self.publish("event", {"event": "completed", "windows": self.K})

