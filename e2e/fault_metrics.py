"""The fault benchmark's figures, computed from a timeline of what happened. Pure.

The timeline (times in seconds from the start of the fault script) holds what the benchmark
saw, not what the operator claims:

- `SiteChange`: a fault-script row as it was applied to a site (the player's own time);
- `CopyObservation`: a shard resource in a member, as a watcher running AT the member's site saw
  it (so a partitioned member is still seen): whether KubeRay's stand-in has it Running, its
  newest checkpoint (the workload's `continuum.dev/last-checkpoint`), or that it is gone;
- `Migration`: a migration that appeared in a Placement on the hub, when it appeared;
- `ReachableChange`: a MemberCluster's `Reachable` condition as the hub showed it.

Definitions (docs/testbed.md, "The fault benchmark", says the same for readers):

- An *outage* of a site runs from a `partition` or `down` row to its `restore` (or the end of
  the run). It is a *failure* if it includes a `down`, or lasts at least `min_failure_s`; a
  shorter partition is a *blip*. The failure time is the outage's start.
- A copy is *running* from the first observation that shows it Running until one shows it not
  Running or gone, or until its site goes `down` (its processes are killed: it runs again only
  once a watcher sees it Running after the site is restored). A running copy is *serving* while
  it works (see below) and its site is neither partitioned nor down: only then can it
  checkpoint and report. A replacement waiting for a hand-over serves from when it is let
  start, so a handoff stuck on an old copy that cannot answer counts as downtime.
- The *shards at a failed site* are the shards that had a copy serving at one of the site's
  members at some time in [failure - horizon, failure]: those the failure threatened, including
  those moved away before it. Per such shard, the old copy is the newest one at the site; the
  *replacement* is the earliest-starting serving interval of the shard, other than the old
  copy's own before the failure, that is still serving after the failure (the same copy serving
  again after a partition heals, or after a downed site is restored, counts).
  - `proactive_lead_s` = failure - replacement start (positive: running before the failure);
  - `mttr_s` = replacement start - failure, 0 when the replacement ran before the failure;
  - *moved before failure*: the replacement started before the failure;
  - *lost work*: the old copy's work after the checkpoint its replacement resumes from, which
    the replacement redoes. The old copy stops counting at the first of the failure, the
    replacement's start and its own end (t_stop); the replacement resumes from the old copy's
    newest checkpoint at or before t_stop (t_c; the copy's own start when it has none yet);
    lost work = t_stop - t_c. It is 0 when the replacement is the old copy itself, having lived
    through a partition (nothing was thrown away), and when the old copy handed over: the
    operator asked it for a last checkpoint (continuum.dev/checkpoint-requested, once the
    replacement ran) and it took one before t_stop's failure or end; by the hand-over
    contract it works no more after that checkpoint, and the replacement resumes from it. A
    shard never replaced counts its work up to t_stop as lost, and counts as unrecovered.
  - `downtime_s`: the time, from the old copy's start or `horizon_s` before the failure
    (whichever is later) to the end of the run, in which no copy of the shard was serving: it
    also counts a replacement that ran before the failure and was moved back after it.
- `detect_s`, per failure: failure -> the first time the hub showed one of the site's members
  with `Reachable` not True (0 if it was already not True): the operator's declaration.
- A *false migration* is a migration off a member whose site has no failure that starts within
  `horizon_s` after the migration or is going on at it; moves for blips count.
- *Degradation episodes*, per site: a run of `up` rows whose RTT is at least `rtt_rise_ms`
  above the site's first `up` row, or whose loss is at least `loss_rise_pct` above it; and
  each blip. Episodes less than `merge_gap_s` apart are one. `degradations_without_failure`
  counts the episodes after which the site had no failure within `horizon_s` of the episode's
  end (nor during it).
- A copy *works* while it runs, except while it waits for its old copy's hand-over (the
  operator made it with continuum.dev/handover-from and has not let it start) and after it
  handed its last checkpoint over (by the hand-over contract it works no more).
- *Duplicate shard-seconds*: per shard, the time during which two (or more) copies were working
  in different members, summed (n copies count n - 1): two copies doing the same work, both
  writing under the shard's checkpoint URI. `duplicate_handoff_s` is the part in which every
  copy's site was up and had been up since the copy started (a make-before-break handoff);
  `duplicate_split_s` the rest (a copy cut off by a partition, or left over from a site that
  went down). `duplicate_s_by_move_reason` splits them by the reason of the shard's last move
  before each overlap began (`none` when there was none). `copies_coexisting_s` counts the same
  over the copies' running intervals, working
  or not: it includes the planned overlap of a make-before-break move, in which the replacement
  runs, waiting, while the old copy hands over.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SiteChange:
    t: float
    site: str
    state: str  # up | partition | down | restore
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0


@dataclass(frozen=True)
class CopyObservation:
    t: float
    member: str
    job: str
    shard: int
    uid: str
    running: bool
    present: bool = True
    checkpoint_t: float | None = None
    checkpoint_requested_t: float | None = None
    """When the operator asked this copy for a last checkpoint (its replacement runs)."""
    waiting: bool = False
    """The copy was made to wait for its old copy's hand-over and has not been let start."""


@dataclass(frozen=True)
class Migration:
    t: float
    job: str
    shard: int
    from_member: str
    to_member: str
    reason: str


@dataclass(frozen=True)
class ReachableChange:
    t: float
    member: str
    status: str


@dataclass(frozen=True)
class Timeline:
    member_site: Mapping[str, str]
    end_t: float
    sites: Sequence[SiteChange] = ()
    copies: Sequence[CopyObservation] = ()
    migrations: Sequence[Migration] = ()
    reachable: Sequence[ReachableChange] = ()


@dataclass(frozen=True)
class Settings:
    min_failure_s: float = 30.0
    horizon_s: float = 120.0
    rtt_rise_ms: float = 20.0
    loss_rise_pct: float = 2.0
    merge_gap_s: float = 30.0


@dataclass(frozen=True)
class Outage:
    site: str
    start: float
    end: float
    down: bool
    restored: bool

    def is_failure(self, min_failure_s: float) -> bool:
        return self.down or self.end - self.start >= min_failure_s


@dataclass
class Run:
    """One interval in which a copy was running (or serving)."""

    member: str
    uid: str
    job: str
    shard: int
    start: float
    end: float
    ended_by: str  # stopped | deleted | killed | partition | open
    checkpoints: list[float] = field(default_factory=list)
    requested: float | None = None
    """When the operator asked the copy for a last checkpoint, if it did."""
    working_from: float | None = None
    """When the copy began to work: its start, or when it was let start after waiting for a
    hand-over (None: it never was, in this interval)."""

    def handed_over_at(self, until: float) -> float | None:
        """The copy's last checkpoint for its replacement, if it took one by `until`: from
        then on it works no more (the hand-over contract), and its replacement resumes there."""
        if self.requested is None:
            return None
        return min((t for t in self.checkpoints if self.requested <= t <= until), default=None)

    def working(self) -> tuple[float, float] | None:
        """The part of the interval in which the copy worked: from `working_from` to its end
        or the last checkpoint it handed over, whichever is first."""
        if self.working_from is None:
            return None
        handed_over = self.handed_over_at(self.end)
        end = self.end if handed_over is None else min(self.end, handed_over)
        return (self.working_from, end) if end > self.working_from else None


ShardKey = tuple[str, int]


def outages(changes: Iterable[SiteChange], end_t: float) -> list[Outage]:
    """Each site's outages, in order of start."""
    found: list[Outage] = []
    open_: dict[str, tuple[float, bool]] = {}
    for change in sorted(changes, key=lambda change: change.t):
        if change.state in ("partition", "down"):
            start, was_down = open_.get(change.site, (change.t, False))
            open_[change.site] = (start, was_down or change.state == "down")
        elif change.state == "restore" and change.site in open_:
            start, was_down = open_.pop(change.site)
            found.append(Outage(change.site, start, change.t, was_down, True))
    for site, (start, was_down) in open_.items():
        found.append(Outage(site, start, max(start, end_t), was_down, False))
    return sorted(found, key=lambda outage: (outage.start, outage.site))


def running_runs(timeline: Timeline, all_outages: Sequence[Outage]) -> list[Run]:
    """Every copy's running intervals, cut where its site went down."""
    by_copy: dict[tuple[str, str], list[CopyObservation]] = defaultdict(list)
    for observation in timeline.copies:
        by_copy[(observation.member, observation.uid)].append(observation)
    runs: list[Run] = []
    for (member, uid), observations in by_copy.items():
        observations.sort(key=lambda observation: observation.t)
        site = timeline.member_site.get(member, "")
        # A down is an observation of its own: every copy at the site stops running then.
        kills = [outage.start for outage in all_outages if outage.down and outage.site == site]
        steps: list[tuple[float, int, CopyObservation | None]] = [
            (observation.t, 1, observation) for observation in observations
        ] + [(t, 0, None) for t in kills]
        steps.sort(key=lambda step: (step[0], step[1]))
        current: Run | None = None
        first = observations[0]
        for t, _, step in steps:
            if step is None:
                if current is not None:
                    current.end, current.ended_by = t, "killed"
                    runs.append(current)
                    current = None
                continue
            observation = step
            checkpoint = observation.checkpoint_t
            if (
                checkpoint is not None
                and current is not None
                and checkpoint not in current.checkpoints
            ):
                current.checkpoints.append(checkpoint)
            if current is not None and current.requested is None:
                current.requested = observation.checkpoint_requested_t
            alive = observation.running and observation.present
            if alive and current is None:
                current = Run(member, uid, first.job, first.shard, t, timeline.end_t, "open")
                if observation.checkpoint_t is not None:
                    current.checkpoints.append(observation.checkpoint_t)
            if alive and current is not None and current.working_from is None:
                current.working_from = None if observation.waiting else t
            elif not alive and current is not None:
                current.end = t
                current.ended_by = "deleted" if not observation.present else "stopped"
                runs.append(current)
                current = None
        if current is not None:
            runs.append(current)
    return sorted(runs, key=lambda run: (run.start, run.member))


def serving_runs(
    runs: Sequence[Run], member_site: Mapping[str, str], all_outages: Sequence[Outage]
) -> list[Run]:
    """The running intervals with the times their site was cut off (partitioned) taken out."""
    serving: list[Run] = []
    for run in runs:
        pieces = [(run.start, run.end, run.ended_by)]
        for outage in all_outages:
            if outage.site != member_site.get(run.member):
                continue
            cut = []
            for start, end, ended_by in pieces:
                if outage.end <= start or outage.start >= end:
                    cut.append((start, end, ended_by))
                    continue
                if outage.start > start:
                    cut.append((start, outage.start, "partition"))
                if outage.end < end:
                    cut.append((outage.end, end, ended_by))
            pieces = cut
        for piece_start, end, ended_by in pieces:
            if run.working_from is None:
                continue  # it waited for a hand-over all along: it never served
            start = max(piece_start, run.working_from)
            if end > start or ended_by == "open":
                serving.append(
                    Run(run.member, run.uid, run.job, run.shard, start, end, ended_by,
                        [t for t in run.checkpoints if start <= t <= end], run.requested,
                        start)
                )  # fmt: skip
    return serving


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _failure_outcomes(
    timeline: Timeline,
    failure: Outage,
    runs: Sequence[Run],
    serving: Sequence[Run],
    horizon_s: float,
    end_t: float,
) -> list[dict[str, Any]]:
    members = {member for member, site in timeline.member_site.items() if site == failure.site}
    t_f = failure.start
    threatened: dict[ShardKey, Run] = {}
    for run in serving:
        if run.member in members and run.start <= t_f and run.end >= t_f - horizon_s:
            key = (run.job, run.shard)
            if key not in threatened or run.start > threatened[key].start:
                threatened[key] = run
    outcomes = []
    for key, old_serving in sorted(threatened.items()):
        old = next(
            run for run in runs
            if run.member == old_serving.member and run.uid == old_serving.uid
            and run.start <= old_serving.start <= run.end
        )  # fmt: skip
        candidates = [
            run for run in serving
            if (run.job, run.shard) == key and (run.end > t_f or run.ended_by == "open")
            and run.start >= old.start and not (run.uid == old.uid and run.start < t_f)
        ]  # fmt: skip
        replacement = min(candidates, key=lambda run: run.start, default=None)
        survived = (
            replacement is not None
            and replacement.uid == old.uid
            and replacement.member == old.member
            and old.ended_by != "killed"
            and old.end >= replacement.start
        )
        t_r = replacement.start if replacement is not None else None
        handed_over = old.handed_over_at(min(t_f, old.end))
        t_stop = min(t_f, old.end, *(() if t_r is None else (t_r,)))
        resumed_from = max([t for t in old.checkpoints if t <= t_stop], default=old.start)
        lost = 0.0 if survived else max(0.0, t_stop - resumed_from)
        if handed_over is not None and not survived:
            resumed_from, lost = handed_over, 0.0
        window = (max(old.start, t_f - horizon_s), end_t)
        served = [(run.start, run.end) for run in serving if (run.job, run.shard) == key]
        outcomes.append(
            {
                "job": key[0],
                "shard": key[1],
                "from": old.member,
                "replacement": None if replacement is None else replacement.member,
                "replacement_running_t": _round(t_r),
                "proactive_lead_s": None if t_r is None else _round(t_f - t_r),
                "mttr_s": None if t_r is None else _round(max(0.0, t_r - t_f)),
                "moved_before_failure": t_r is not None and t_r < t_f,
                "lost_work_s": _round(lost),
                "resumed_from_checkpoint_t": _round(resumed_from),
                "same_copy": survived,
                "downtime_s": _round(_uncovered(window, served)),
            }
        )
    return outcomes


def _uncovered(window: tuple[float, float], spans: Sequence[tuple[float, float]]) -> float:
    """How much of `window` none of `spans` covers."""
    start, end = window
    covered, reach = 0.0, start
    for span in sorted(spans):
        first, last = max(span[0], reach, start), min(span[1], end)
        if last > first:
            covered += last - first
            reach = last
    return max(0.0, end - start - covered)


def _detect_s(timeline: Timeline, failure: Outage) -> float | None:
    members = {member for member, site in timeline.member_site.items() if site == failure.site}
    changes = sorted(
        (change for change in timeline.reachable if change.member in members),
        key=lambda change: change.t,
    )
    before = [change for change in changes if change.t <= failure.start]
    latest: dict[str, str] = {}
    for change in before:
        latest[change.member] = change.status
    if any(status != "True" for status in latest.values()):
        return 0.0
    after = next(
        (change for change in changes if change.t > failure.start and change.status != "True"),
        None,
    )
    return None if after is None else after.t - failure.start


def episodes(
    timeline: Timeline, all_outages: Sequence[Outage], settings: Settings
) -> list[dict[str, Any]]:
    """Each site's degradation episodes (shaping rises and blips), merged when close."""
    by_site: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    base: dict[str, SiteChange] = {}
    open_at: dict[str, float] = {}
    for change in sorted(timeline.sites, key=lambda change: change.t):
        if change.state == "up":
            base.setdefault(change.site, change)
            reference = base[change.site]
            raised = (
                change.rtt_ms >= reference.rtt_ms + settings.rtt_rise_ms
                or change.loss_pct >= reference.loss_pct + settings.loss_rise_pct
            )
            if raised:
                open_at.setdefault(change.site, change.t)
            elif change.site in open_at:
                by_site[change.site].append((open_at.pop(change.site), change.t, "degradation"))
        elif change.state in ("partition", "down") and change.site in open_at:
            by_site[change.site].append((open_at.pop(change.site), change.t, "degradation"))
    for site, start in open_at.items():
        by_site[site].append((start, timeline.end_t, "degradation"))
    for outage in all_outages:
        if not outage.is_failure(settings.min_failure_s):
            by_site[outage.site].append((outage.start, outage.end, "blip"))
    found = []
    for site, spans in by_site.items():
        merged: list[list[Any]] = []
        for start, end, kind in sorted(spans):
            if merged and start - merged[-1][1] < settings.merge_gap_s:
                merged[-1][1] = max(merged[-1][1], end)
                merged[-1][2] = sorted(set(merged[-1][2]) | {kind})
            else:
                merged.append([start, end, [kind]])
        for start, end, kinds in merged:
            failed = any(
                outage.site == site
                and outage.is_failure(settings.min_failure_s)
                and start <= outage.start <= end + settings.horizon_s
                for outage in all_outages
            )
            found.append({"site": site, "start_t": _round(start), "end_t": _round(end),
                          "kinds": kinds, "followed_by_failure": failed})  # fmt: skip
    return sorted(found, key=lambda episode: (episode["start_t"], episode["site"]))


def _false_migration(migration: Migration, timeline: Timeline, failures: Sequence[Outage],
                     horizon_s: float) -> bool:  # fmt: skip
    site = timeline.member_site.get(migration.from_member)
    return not any(
        failure.site == site and failure.start - horizon_s <= migration.t <= failure.end
        for failure in failures
    )


def duplicates(
    runs: Sequence[Run],
    member_site: Mapping[str, str],
    all_outages: Sequence[Outage],
    working_only: bool = True,
) -> tuple[float, float, list[dict[str, Any]]]:
    """Duplicate shard-seconds: (handoff, split, the overlaps) of the copies' working intervals
    (`Run.working`), or with `working_only` false of their whole running intervals."""
    by_shard: dict[ShardKey, list[tuple[Run, float, float]]] = defaultdict(list)
    # A copy that ran before its site went down and runs again after is the same copy.
    born: dict[tuple[str, str], float] = {}
    for run in runs:
        born[(run.member, run.uid)] = min(run.start, born.get((run.member, run.uid), run.start))
        interval = run.working() if working_only else (run.start, run.end)
        if interval is not None:
            by_shard[(run.job, run.shard)].append((run, *interval))
    handoff = split = 0.0
    overlaps: list[dict[str, Any]] = []
    for key, intervals in sorted(by_shard.items()):
        bounds = sorted({t for _, start, end in intervals for t in (start, end)})
        for start, end in itertools.pairwise(bounds):
            live = [run for run, begin, until in intervals if begin <= start and until >= end]
            members = {run.member for run in live}
            if len(members) < 2 or end <= start:
                continue
            stale = any(
                outage.site == member_site.get(run.member)
                and outage.start < end and outage.end > born[(run.member, run.uid)]
                for run in live for outage in all_outages
            )  # fmt: skip
            seconds = (len(members) - 1) * (end - start)
            if stale:
                split += seconds
            else:
                handoff += seconds
            if (
                overlaps
                and overlaps[-1]["job"] == key[0]
                and overlaps[-1]["shard"] == key[1]
                and overlaps[-1]["end_t"] == _round(start)
                and overlaps[-1]["split"] == stale
            ):
                overlaps[-1]["end_t"] = _round(end)
                overlaps[-1]["seconds"] = _round(overlaps[-1]["seconds"] + seconds)
            else:
                overlaps.append({"job": key[0], "shard": key[1], "members": sorted(members),
                                 "start_t": _round(start), "end_t": _round(end),
                                 "seconds": _round(seconds), "split": stale})  # fmt: skip
    return handoff, split, overlaps


def _move_reason(overlap: Mapping[str, Any], migrations: Sequence[Migration]) -> str:
    """The reason of the move that made an overlap: the shard's last migration before the
    overlap began ("none": two copies with no move between them)."""
    moves = [
        migration
        for migration in migrations
        if (migration.job, migration.shard) == (overlap["job"], overlap["shard"])
        and migration.t <= overlap["start_t"]
    ]
    return max(moves, key=lambda migration: migration.t).reason if moves else "none"


def duplicates_by_move_reason(
    overlaps: Sequence[Mapping[str, Any]], migrations: Sequence[Migration]
) -> dict[str, float]:
    """Working-duplicate seconds per reason of the move that made them: the goal of no
    duplicate holds for Proactive moves, while a Failure move off a member the hub cannot
    reach leaves its old copy running until the member answers (push mode cannot fence)."""
    found: dict[str, float] = defaultdict(float)
    for overlap in overlaps:
        found[_move_reason(overlap, migrations)] += overlap["seconds"] or 0.0
    return {reason: round(seconds, 2) for reason, seconds in sorted(found.items())}


def summarize(timeline: Timeline, settings: Settings) -> dict[str, Any]:
    """The summary of one run and the events behind it (failures with their shards' outcomes,
    migrations judged, episodes, duplicate overlaps)."""
    all_outages = outages(timeline.sites, timeline.end_t)
    failures = [outage for outage in all_outages if outage.is_failure(settings.min_failure_s)]
    runs = running_runs(timeline, all_outages)
    serving = serving_runs(runs, timeline.member_site, all_outages)
    events: list[dict[str, Any]] = []
    leads: list[float] = []
    mttrs: list[float] = []
    lost: list[float] = []
    downtime: list[float] = []
    detects: list[float] = []
    shards_at_failed = moved_before = unrecovered = 0
    for failure in failures:
        outcomes = _failure_outcomes(
            timeline, failure, runs, serving, settings.horizon_s, timeline.end_t
        )
        detect = _detect_s(timeline, failure)
        if detect is not None:
            detects.append(round(detect, 2))
        for outcome in outcomes:
            shards_at_failed += 1
            moved_before += outcome["moved_before_failure"]
            lost.append(outcome["lost_work_s"])
            downtime.append(outcome["downtime_s"])
            if outcome["mttr_s"] is None:
                unrecovered += 1
            else:
                leads.append(outcome["proactive_lead_s"])
                mttrs.append(outcome["mttr_s"])
        events.append({
            "event": "failure", "t": _round(failure.start), "site": failure.site,
            "kind": "down" if failure.down else "partition", "end_t": _round(failure.end),
            "detect_s": _round(detect), "shards": outcomes,
        })  # fmt: skip
    false = 0
    false_reasons: dict[str, int] = defaultdict(int)
    for migration in sorted(timeline.migrations, key=lambda migration: migration.t):
        is_false = _false_migration(migration, timeline, failures, settings.horizon_s)
        false += is_false
        if is_false:
            false_reasons[migration.reason] += 1
        events.append({
            "event": "migration", "t": _round(migration.t), "job": migration.job,
            "shard": migration.shard, "from": migration.from_member, "to": migration.to_member,
            "reason": migration.reason, "false": is_false,
        })  # fmt: skip
    found_episodes = episodes(timeline, all_outages, settings)
    events += [{"event": "episode", "t": episode["start_t"], **episode}
               for episode in found_episodes]  # fmt: skip
    handoff, split, overlaps = duplicates(runs, timeline.member_site, all_outages)
    coexisting = sum(duplicates(runs, timeline.member_site, all_outages, working_only=False)[:2])
    events += [{"event": "duplicate", "t": overlap["start_t"], **overlap} for overlap in overlaps]
    blips = [outage for outage in all_outages if not outage.is_failure(settings.min_failure_s)]
    events += [
        {"event": "blip", "t": _round(blip.start), "site": blip.site, "end_t": _round(blip.end)}
        for blip in blips
    ]
    events.sort(key=lambda event: event["t"] if event["t"] is not None else 0.0)
    summary = {
        "failures": len(failures),
        "shards_at_failed_sites": shards_at_failed,
        "moved_before_failure": moved_before,
        "proactive_lead_s": leads,
        "detect_s": detects,
        "mttr_s": mttrs,
        "false_migrations": false,
        "degradations_without_failure": sum(
            1 for episode in found_episodes if not episode["followed_by_failure"]
        ),
        "duplicate_shard_seconds": round(handoff + split, 2),
        "lost_work_s": lost,
        # Beyond the fields:
        "unrecovered": unrecovered,
        "downtime_s": downtime,
        "migrations": len(timeline.migrations),
        "false_migrations_by_reason": dict(sorted(false_reasons.items())),
        "degradation_episodes": len(found_episodes),
        "blips": len(blips),
        "duplicate_handoff_s": round(handoff, 2),
        "duplicate_split_s": round(split, 2),
        "duplicate_s_by_move_reason": duplicates_by_move_reason(overlaps, timeline.migrations),
        "copies_coexisting_s": round(coexisting, 2),
    }
    return {"summary": summary, "events": events}


def observations_from_records(
    records: Iterable[Mapping[str, Any]], offset: float = 0.0
) -> list[CopyObservation]:
    """The shard watchers' records (e2e/shard_watch.py: a `snapshot` of what a member holds,
    or one watch `event`) as observations; a copy missing from a member's snapshot is gone.
    `offset` is subtracted from every time (the wall time the script started)."""
    known: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
    found: list[CopyObservation] = []

    def observe(t: float, member: str, item: Mapping[str, Any], present: bool) -> None:
        checkpoint, requested = item.get("checkpoint_t"), item.get("checkpoint_requested_t")
        found.append(CopyObservation(
            t - offset, member, str(item["job"]), int(item["shard"]), str(item["uid"]),
            bool(item.get("running")) and present, present,
            None if checkpoint is None else float(checkpoint) - offset,
            None if requested is None else float(requested) - offset,
            bool(item.get("waiting")),
        ))  # fmt: skip

    for record in sorted(records, key=lambda record: float(record["t"])):
        t, member = float(record["t"]), str(record["member"])
        if record["record"] == "snapshot":
            kind = record.get("kind")
            current = {str(item["uid"]): item for item in record["items"]}
            for uid, item in list(known[member].items()):
                if uid not in current and item.get("kind") == kind:
                    observe(t, member, item, present=False)
                    del known[member][uid]
            for uid, item in current.items():
                known[member][uid] = item
                observe(t, member, item, present=True)
        else:
            item = record["item"]
            present = record["type"] != "DELETED"
            observe(t, member, item, present)
            if present:
                known[member][str(item["uid"])] = item
            else:
                known[member].pop(str(item["uid"]), None)
    return found


def shard_running(
    kind: str, status: Mapping[str, Any] | None, spec: Mapping[str, Any] | None = None
) -> bool:
    """KubeRay's status says the shard runs: a RayJob's Running/RUNNING, a RayService Ready.
    A RayJob with `spec.suspend` (a Pull member's agent fenced it) does not: KubeRay takes its
    Ray cluster down, and its status says so only a reconcile later."""
    status = status or {}
    if kind == "RayJob":
        if (spec or {}).get("suspend"):
            return False
        return status.get("jobDeploymentStatus") == "Running" and status.get("jobStatus") in (
            "RUNNING",
            None,
        )
    return any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in status.get("conditions") or []
    )
