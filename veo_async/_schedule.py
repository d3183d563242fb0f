"""A learning poll schedule: poll where a task of this model and age is likely to finish.

Pure and seedable (no asyncio, no I/O): the session feeds a
:class:`DurationLearner` the generation time of each finished record
(``completeTime - createTime``, per model) and the age of each poll that found
a task still running, and asks an :class:`AdaptiveSchedule` for the next delay
of a task given its model, its age and how many polls it has had. Given the
same observations, the same calls and the same ``random.Random``, it returns
the same delays, so a schedule can be replayed offline
(``benchmarks/bench_schedule.py`` does).

What is learned
---------------
A survival (Kaplan-Meier) estimate per model, on log-spaced bins: finished
tasks are events, and tasks seen still running are at risk up to the age they
were seen at. Counting the running ones matters twice: a batch whose renders
take twice the prior's time is learned from its first polls past the prior's
bulk, before any finishes; and the finished ones alone (the fast come first)
would bias the estimate short, and the schedule would overspend. The prior
(a documented log-normal per model) has its median fitted to the data
(censored maximum likelihood), and weighs ``prior_weight`` tasks in each bin's
hazard: it rules where data are thin, such as past the oldest task seen.
Until finishes pin its median, the prior is widened by the doubt about that
median, so that a service running at 0.7x or 1.5x the documented times is
polled where its renders finish while the first of them are awaited.

Old evidence counts half once a model's weight passes ``memory`` (4,096
finishes), and sooner when the service drifts: every 25 finishes, what the
model's tasks did over the latest 500 intervals they were watched through
is checked against its table (the finishes seen against those the table's
hazard expects over the same intervals, up to its 90th percentile and
short of the oldest age its data reached: a one-sample log-rank test, which
the order finishes come in does not skew); more than 4 standard deviations
apart, the model's evidence is halved and the tables are made again. A service whose
renders grow from 150 s to 450 s through 2,000 tasks was otherwise trailed
by an estimate of the whole past, and one speeding up as much was polled
late: 0.9-0.98x fixed polling's mean lag, 1.4-1.65x its p95, now
0.61-0.64x and 0.76-0.80x. A shorter ``memory`` for all (512) did less for
drift and cost the steady workloads up to 4.6 points of lag. A first check,
on the mean probability-integral transform of the latest 100 finishes, was
fooled by tasks created in bursts (a burst finishes its short renders
first): 174 halvings over a steady service of 20,000 tasks in bursts of
1,000, against none for this one.

How the delays are chosen
-------------------------
A poll can only learn "not done yet at this age". For a known distribution
of generation times the best schedule - fewest requests for a given mean
detection lag - is a dynamic program over poll times minimising
``E[lag] + lam * E[requests]`` (the "optimal checking" problem). This module
solves that program on a 2 s grid, per model, on the *learned* distribution
(each 2 % log bin's mass spread over the seconds it spans), with one ``lam``
shared by every model - the price of a request - chosen so that the expected
requests per task, weighted by how many tasks of each model were seen
lately (each counts half once 100 more were seen, so that models coming in
turns are each priced for themselves), equal those of polling every
``budget_interval`` seconds (30 s, the Veo docs' advice) on the same
distributions: each task's first request, which any
schedule makes, and of the requests fixed polling makes beyond it 95 % at
first, to leave room for the estimate's error while learning, then as the
spend ledger says, below. (A share of the *whole* budget would leave renders
shorter than ``budget_interval``, one request each under fixed polling, less
than one request a task: the program could then only poll once, late, and
did worse than fixed polling.) A shared price spends more on the
short model, where a request buys more lag (an early probe for its fast
failures), and less on the long one, as the limit does. Spends come in
steps, so the two solutions either side of the budget are mixed at random,
decision by decision, to spend it. Each
second of lag beyond ``late_lag`` (24 s) costs ``1 + late_weight`` times as
much, and if the schedule's own 95th percentile of lag, over every model's
tasks together (more than 5 % of them detected later than 95 % of fixed
polling's p95), would still pass it, that price is raised for the models
whose own lags pass it too often (at most three times, x2 each): the p95 lag
stays at or below fixed polling's where completions are sparse (early
failures, long tails). The program's cost is Monge, so the optimal next poll
is monotone in the age and each solve costs O(grid x gap); the tables are
rebuilt (all together, the price being shared) only when a model's evidence
(finishes and running polls) has grown by half (or by ``rebuild_every``),
never per call. A call is then a table look-up.

On top of the optimum: the prior gives fast failures a share, spread over
5-40 s, so that the schedule keeps an early probe until the data say whether
fast failures happen. That share is learned from every model's tasks
together (:meth:`DurationLearner.fast_failure_share`: ``early_mass``, 6 %,
worth ``prior_weight`` tasks, and the tasks seen past 40 s or finished
before), since a render fails fast for its prompt or its inputs, not for
its model: a model with few tasks of its own (10 % veo3 beside veo3_fast)
is probed early when the others fail early, where with a share of its own
(3 %, fading with its own tasks) it was first polled at 140-160 s and its
fast failures waited two minutes. Beyond the prior, each model's own early
failures count as the rest of its data do. (A share of 3 % over 5-60 s
first polled new tasks at 60-90 s: a fast failure in the first minutes of a
session waited 50-80 s, fixed polling 15 s; 206 files of 300-2,000 Veo-like
tasks, 0-10 % failing: 34 missed the goal, now 21, at the same lag and
requests on the built-in workloads.) Gaps never shorter than ``min_gap``
and, once past the bulk of the renders (the learned 90th percentile, or
twice the documented median if that comes first), never longer than
``max_gap`` (30 s), so a long render, or an id handed in old, is still seen
within ``max_gap``, and there never shorter than a twentieth of the task's
age, up to two thirds of ``budget_interval`` (20 s): while the estimate
learns, its tail is thinner than the truth (the tasks that would show it
still run), and the program, expecting few tasks there, polled them every
4-14 s (a 300-task file's slowest fifth cost 1.3-1.6x fixed polling's
requests); inside the bulk the program places them (a model whose
renders are of two kinds has an empty valley between them, and it is
crossed in one gap); a seeded jitter of +-``jitter`` of
each delay, at most 0.8 s, so that a jittered poll is still recognised as the
planned one and the next aims at its planned time (jitter never piles up
into extra polls); past the table's horizon (the 99.95th percentile), polls
every ``max_gap``.

The spend ledger
----------------
The budget is spent on the *estimated* distribution; the requests are spent on
the real one. While the estimate is learning (and in any part of it that is
off) the two differ: a schedule spends less than fixed polling on short tasks
and more on long ones, so an estimate whose tail is too light or too heavy
spends more or less than it planned. The learner keeps a ledger of what the
finished tasks followed from their creation really cost, beside what fixed
polling would have cost them, per stratum of generation time
(:meth:`DurationLearner.spend_ratio`, and :meth:`~DurationLearner.extra_spend_ratio`
for the requests beyond each task's first; finished tasks are the short ones
first, so each stratum weighs what the estimate says it weighs). Once 100 such
tasks span 95 % of the estimate (up to the slowest stratum with entries, the
empty ones under it included: a few early failures leave gaps among
theirs), the budget's share is steered towards
spending, beyond each task's first request, 97.5 % of what fixed polling
spends beyond it (about 98 % of the whole for Veo's renders): the share moves
by what the ledger reads over or under that (within 50-115 % of the
estimate's requests beyond the first; above 100 %, spending what was
saved, at half the pace, since the ledger reads a task's spend minutes
after its plan was set; over fixed polling's, it falls as the
fourth power of the reading: a proportional step there, down to 85 %, left a
service whose renders slow down through the session 4-6 % over fixed
polling's requests). Up to fixed polling's spend the correction is
proportional, so where the plan itself spends more than its estimate
says (a distribution estimated wider than the renders are, as the doubt
about a prior's median makes it at first) the spend settles nearer 100 %
(1,000-task samples: 95-100 %). A correction that removes that offset
(multiplicative) was measured: it brings the spend to the aim but lengthens
the lag of files that had been spending 98.5-99 %, and was left out.

When the mix of models turns (a batch of one model, then of another), the
ledger's entries are those of the model leaving: its savings were then
spent on the model coming in, at the price of the one leaving, until the
ledger caught up (400 veo3 renders, then 600 veo3_fast ones: 1.008x fixed
polling's requests, the first 100 fast renders 1.25-1.35x). So the learner
also watches the mix over the latest few dozen tasks beside the recent one
the price follows (half-lives 25 and 100 tasks): when the two differ by
more than 0.3 (half the summed absolute difference of the models' shares;
at most about 0.47 with these half-lives, for a complete turn to a model
not seen lately) the ledger's old entries count half, at most once per 300
tasks (:attr:`DurationLearner.turns` counts these). A complete turn reads
0.37-0.47 and is seen 20-70 tasks in (later where the two models' first
polls overlap); a partial one (80/20 to 20/80) is not seen. Tasks arriving
one at a time in a steady mix never turned (at most 0.25 over
150 files of 2-12 models), but tasks created in bursts of a few hundred
can: each model's first polls come together (its first delay), and a burst
of 250 half-and-half tasks reads 0.35, a false turn (bursts of 1,000 with a
95/5 mix spent 1.025x fixed polling's requests against 0.93x without the
halving). So the session also tells the learner of each task it creates,
model and all (:meth:`DurationLearner.created`, at the first plan of the
task's first wait; a task resumed from a store with its creation time is
told too, an extend, whose model comes with its first record, is not), and
its polls say so (``announced``). While at least half the recent first
polls are of tasks told so, a turn at first polls counts only if the mix of
the tasks created turned since the last turn counted (each turn of the
creations allows one, however many tasks are created before the first is
polled): bursts then read as none (their creations come in no order of
model), and files in turns turn as before (138 files, at one task every 2
s and every 0.5 s: the same requests and lags). Ids handed in are seen at
their first polls only (their model comes with the first record), where
bursts do not group by model. Each turn costs some lag:
the ledger, reading the first tasks of the model coming in, cuts the
budget (two models in turns: +0.01 to +0.05x fixed polling's mean lag;
three: up to +0.09x).

Age
---
The schedule follows the task's age, not the moment the wait began: a task
handed in 4 minutes after its creation is polled like a 4-minute-old one. A
first poll (``polls == 0``) of a task old enough that it may already have
finished (``P(done by age) >= 5 %``) goes out at once. ``age=None`` (creation
time unknown) is treated as a task the schedule has followed since its
creation: its age is taken to be that of its ``polls``-th poll in the fresh
schedule, so the first poll is the fresh schedule's first probe.

The explorer: the learner learns only from finishes, and the first poll of a
fresh task is 30-80 s in, so a service far faster than the priors (or a test
server finishing tasks in seconds) would have every task of a session's
first minute found a minute late. The first task planned while nothing has
finished (``AdaptivePolicy.explorers``, 1) is also polled at 2, 4, 8 and 16
s of age, then follows its table from there: four requests once a session
(built-in workloads and 150 files of 100-2,000 tasks: the same goal counts,
mean lag and requests within their noise).

One finish that early moved nothing, though (the fit moves a prior at most
20-fold and explains a few early finishes as failures; the survival
estimate weighs one finish against the prior's 20 tasks): against a test
server rendering in 1 s, a session's next tasks were polled at 24-40 s until
some ten had finished. A success under the age its prior calls impossible
(``_IMPOSSIBLE_Z``: 27 s for veo3_fast) moves the estimate to such
successes while they outnumber the tasks seen running past that age (see
``_Histogram.rebased``); a model with none of its own finished follows
every model's. The table is rebuilt at once (not some eight finishes
later), its move counts as a revision, and the polls already queued are
planned again: the burst created with the explorer is seen at 2 s. The
prior's fast failures come as much sooner as its renders do
(:meth:`DurationLearner.rebased_scale`). Renders under ``_TEST_SERVER_SCALE``
of the documented times (3 s for veo3_fast) are a test server's: the budget
is then fixed polling's at the service's own pace (at least every
``min_gap``), since every 30 s is one request a task there, and held to that
the program polled once, past the tail the doubt widens (8-33 s). A
service as documented, or 2-3x faster, finishes no success that early
(the built-in workloads and the survey: unchanged).

A test server may fail its tasks at once instead: failures are no model's
speed, so they rebase nothing, but while failures under 5 s (the documented
fast failures' earliest, ``_INSTANT_FAILURE``) outnumber the tasks seen
running past 5 s, the fast failures' span moves to them
(:meth:`DurationLearner.failure_scale`), and that too rebuilds the tables at
once and counts as a move: a burst failing at once was seen at 40 s (the
prior's early probe), now in 2-6 s. A service's tasks are seen running past
5 s from their first polls: an instant failure among them moves nothing.
"""

from __future__ import annotations

import bisect
import collections
import math
import random
from array import array
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from ._numbers import NotANumberError, check_real, is_finite, shown

__all__ = [
    "DEFAULT_PRIORS",
    "AdaptivePolicy",
    "AdaptiveSchedule",
    "DurationLearner",
    "DurationPrior",
    "REPLAN_GAIN",
    "PooledPrior",
    "optimal_polls",
    "optimal_polls_in_steps",
]

#: Seconds per step of the dynamic program's grid.
GRID = 2.0
#: Candidate polls a rebuild step weighs before it lets the loop run (see
#: optimal_polls_in_steps): about a millisecond or two.
STEP_WORK = 4000
# The learner's histogram: bins 2 % wide in log-seconds, from 1 s to 2 h.
_LOG_BIN = 0.02
_LOG_BINS = math.ceil(math.log(7200.0) / _LOG_BIN)
# Fast failures, for the prior's early_mass share: seconds after creation.
_EARLY_SPAN = (5.0, 40.0)
# A first poll of a task handed in this likely to be done already goes at once.
_DONE_ALREADY = 0.05
# Every task costs one request at least, whatever the schedule, and fixed
# polling's budget holds it too: the shares below are of the requests beyond
# it, the ones a schedule chooses. (A share of the whole left renders shorter
# than the budget interval, one request each under fixed polling, less than
# one request a task: a single late poll, a lag worse than fixed polling's.)
# Share of the budget interval's requests beyond the first aimed at until the
# spend ledger speaks: room for jitter and for the estimate's error while learning.
_BUDGET_SHARE = 0.95
# What the spend ledger steers to: requests beyond the first of finished tasks
# over those of fixed polling, the tasks weighed by the estimated distribution
# of generation time (see DurationLearner.extra_spend_ratio). Below 1 for the
# noise of the ratio.
_SPEND_AIM = 0.975
# The ledger reads no extra spend where fixed polling makes fewer than this
# many requests a task beyond the first (the ratio of two near-zeros is noise).
_EXTRA_AT_LEAST = 0.01
# The pace at which a share over 1 follows the ledger (see _budget_share).
_SAVINGS_GAIN = 0.5
# The share of the estimate's budget is kept within these, whatever the ledger
# says. Above 1: what the tail's floor (_TAIL_GAP) saved is spent (with the
# floor, a cap of 1.0 left 35 of the 266 files of the survey missing the goal
# on lag, 1.15 29; without the floor, a cap above 1 pushed files of 300-1,000
# tasks over fixed polling's requests).
_SHARE_RANGE = (0.5, 1.15)
# Over fixed polling, the share falls as the ratio's power: 1.1x -> 0.65, 1.2x -> 0.5.
_OVERSPEND_POWER = 4.0
# Drift: what a model's tasks did lately is checked against its table: the
# finishes seen over the latest 500 watched intervals (a poll that found a
# task running, or finished) against those the table's hazard expects over
# the same intervals (a one-sample log-rank test, which the order finishes
# come in does not skew). Past this many standard deviations apart, the
# model's old evidence is halved and its table rebuilt.
_DRIFT_WINDOW = 500
_DRIFT_Z = 4.0
# ... over the ages up to this quantile of the table (its bulk).
_DRIFT_BULK = 0.9
# ... and short of the oldest age seen when it was made by this factor (some
# four widths of the smoothing kernel), and not at all below this age.
_DRIFT_SHORT_OF = math.exp(-0.2)
_DRIFT_MIN_BULK = 10 * GRID
# ... checked after every this many finishes, once a table was built on this many.
_DRIFT_EVERY = 25
_DRIFT_AFTER = 200
# The ledger speaks once this many finished tasks were followed from creation,
# and their generation times cover this much of the estimated distribution.
# 95 %, not 99 %: waiting for the slowest 1 % (long tails, 2-3x the median)
# kept it silent through most of a file of a few hundred tasks, which then ran
# at the default share, 0.87-0.94x fixed polling's requests. Over 206 files
# like the service's (300-2,000 tasks, two models, 0-10 % early failures) and
# 105 of one model each, with 95 %: 19 and 32 miss the goal (21 and 35 with
# 99 %, 20 and 32 with 90 %), 2 and 3 over fixed polling's requests (1 and 7;
# 4 and 3). The strata it has not seen yet are left out of the reading, not
# guessed: past the median, gaps are those of fixed polling, so they change
# the ratio little. (The count of tasks is not what binds: 40 or 60 read alike.)
# The span covered runs up to the slowest stratum with entries, the empty ones
# under it included: early failures spread over 5-40 s leave some of those
# strata empty in a small file, and the ledger stayed silent through it (files
# of 300-1,000 tasks with 3-10 % failures spent 0.85-0.93x fixed polling's
# requests while learning). With the span (and savings spent at half the
# pace, _SAVINGS_GAIN), 25 of the survey's 266 files miss the goal, not 29.
_LEDGER_TASKS = 100
_LEDGER_COVER = 0.95
# The ledger's strata: this many log bins (10 % wide): few empty strata in the tail.
_LEDGER_STRATUM = 5
# A model's table *moves* (see AdaptiveSchedule.revisions) when its median
# is this far (log-seconds: 20 %) from where it was at the last move: the
# polls of its tasks already planned are then planned again. Tables are
# rebuilt often and change a little each time; a move of a fifth is a prior
# that was wrong (a service faster than documented), not noise. 20 %: over
# 24 files of services 1.5-3.3x faster than documented, 6 miss the goal
# without re-planning, 1-2 with it (10 % alike); of 206 Veo-like files and
# 105 of one model each, 20-21 and 31 miss (19 and 32 without).
_REPLAN_SHIFT = 0.2
#: A poll planned again is brought forward only if by this many seconds at
#: least: less is not worth moving it in the queue.
REPLAN_GAIN = 1.0
# A further share of the budget held back while the prior rules (see _curve).
# 15 %: with the early probe a fast-failure share asks for (6 %, over 5-40 s),
# 10 % left 9 of 105 one-model files of 100-500 tasks over fixed polling's
# requests (4 before that share), 15 % 7, at the same mean lag.
_PRIOR_MARGIN = 0.15
# The schedule's own p95 lag is kept under this share of fixed polling's p95
# (0.95 x budget_interval), leaving room for the estimate's error.
_P95_SHARE = 0.95
# The dynamic program's horizon: this quantile (the rest is lumped at its end).
_HORIZON_Q = 0.9995
# Gaps are capped at max_gap once past this quantile (the bulk of the renders),
# and in any case past this many times the prior's (documented) median.
# The 90th percentile, not the median: a model whose renders are of two kinds
# (half about 100 s, half about 400 s) has its median in the empty valley
# between them, and a cap from there spent a poll every 30 s on the valley;
# the ledger then read the plan over budget and took the polls back from the
# short kind (first polled at 194 s). 1,000 such renders: 0.93x fixed
# polling's mean lag and 1.78x its p95, now 0.72x and 0.96x; three kinds
# (90, 250, 600 s): 0.81x and 1.03x, now 0.77x and 0.97x. Where the renders
# have one mode the program keeps its gaps short in the bulk anyway: 230
# Veo-like files, 105 of one model and 72 of services faster or slower than
# documented miss the goal as often as with the median (23, 31 and 20).
_CAP_FROM_Q = 0.9
_CAP_FROM_PRIOR = 2.0
# Past the same quantile, gaps are at least this share of the task's age
# (25 s at 500 s), up to this share of the budget interval (20 s of 30).
# While the estimate learns, its tail is thinner than the truth (the tasks
# that would show it still run), and the program, expecting few tasks
# there, polled them every 4-14 s: the slowest fifth of a 300-task file
# (log-sd 0.4, 2 % of renders 2-3x longer) cost 1.56x fixed polling's
# requests, and 5 of 36 files of one model spent 1.004-1.04x fixed
# polling's requests in all. With the floor (and the share's cap at 1.15,
# see _SHARE_RANGE): 1 of the 36 (1.010x), and of the 266 of the survey 29
# miss the goal instead of 33, at the same mean lag. A file of many tasks
# pays a little lag for it (10,000 mostly veo3: 0.50x fixed polling's mean
# lag, was 0.48x).
_TAIL_GAP_PER_AGE = 0.05
_TAIL_GAP = 2.0 / 3.0
# Fitting a prior's median to the data: searched within +-_FIT_SHIFTS bins
# (x/÷ 20), with a floor of uniform mass so that outliers (early failures) do
# not drag the fit.
_FIT_SHIFTS = 150
_FIT_FLOOR = 0.05
# Doubt about a prior's median (log-sd: x/÷ 1.35), and the finishes after
# which its variance has halved: see _with_doubt.
_MEDIAN_DOUBT = 0.3
_DOUBT_FADES = 10.0
# A success this many log-sds (with the median's doubt) under a prior's
# median is one it calls impossible (its 0.01 % quantile): veo3_fast's prior
# (150 s) puts it at 27 s, veo3's at 54 s, the pooled prior's at 16 s. A
# service as documented, or 2-3x faster, finishes none so early; a test
# server does (see _Histogram.rebased).
_IMPOSSIBLE_Z = 3.719
# Renders this share of the documented times or less (3 s for veo3_fast)
# come from no video model: a test server. There, and only there, a table's
# budget is fixed polling's at the service's own pace (see _curve), not
# every 30 s: a test's tasks are then seen in 2-4 s, for 2-3 requests
# each. Files of renders at 0.05-0.2x the documented times keep fixed 30 s
# polling's budget (1,500 tasks of 8, 15, 25 s, 3 % failing: 1.005x,
# 1.003x, 0.998x its requests, as before the rebase; with the pace budget
# 3.2-3.9x, and with 0.05 here 1.23x for those of 8 s: the first of them,
# the shortest, read as a test server). Such files miss the goal on lag
# too (1.04x and 1.18x fixed polling's for 8 and 15 s): renders that short
# are no video model's, and fixed polling's one request a task leaves no
# room.
_TEST_SERVER_SCALE = 0.02
# Failures under this many seconds (the documented fast failures' earliest)
# are *instant*: no service fails a render so soon, a test server does. While
# they outnumber the tasks seen running past it, the fast failures' span is
# moved to them (see DurationLearner.failure_scale): a test server failing
# every task at once had its tasks seen at 40 s (the prior's early probe),
# one by one as the first were created; a service as documented sees its
# tasks run past 5 s at their first poll, and an instant failure among them
# moves nothing.
_INSTANT_FAILURE = _EARLY_SPAN[0]
# How much of ``prior_weight`` the prior's median keeps against the fit: a
# tenth, since every task still running moves it too, and they are many; the
# prior's shape still weighs ``prior_weight`` (see survival_masses).
_FIT_TRUST = 0.1
# The narrowest spread DurationLearner.as_prior gives (log-sd): a prior
# narrower than its data's binning would claim more than was learned.
_SIGMA_FLOOR = 0.05
# Models whose requests set the shared price of a request: the most used,
# at least this many, and as many more as it takes to cover this share of
# the recent tasks. (The four most used alone, with 12 models used alike,
# priced for a third of the tasks: the others spent as that price made
# them, 0.95-1.02x fixed polling's requests, 1.2x over the last 800 tasks
# of one file; priced for all, 0.97-0.99x, at up to 0.05x less lag.)
_PRICING_MODELS = 4
_PRICING_SHARE = 0.95
# Models with tables of their own beyond those with priors (see
# AdaptiveSchedule.table_key); others share the pooled table.
_MAX_TABLES = 8
# The mix of models the shared price is set for is that of the recent tasks:
# each task seen counts half as much once this many more were seen. Models
# that come in turns (a batch of one, then of the other) are then each priced
# for themselves: with every task since the start counting alike, the second
# model was polled at the price set for the first one's, and spent 4-7 % more
# (or 10-15 % less) than fixed polling. About as many tasks as are in flight
# at once; 50 made stationary mixes noisier, 500 was too slow to follow a turn.
_MIX_HALF_LIFE = 100.0
# A turn of the mix of models (see "The spend ledger" in the module
# docstring): the mix over this short half-life, against the recent one,
# differs by more than _TURN_SHIFT (half the summed absolute difference of
# the shares); the ledger is then halved, at most once per _TURN_GAP tasks
# (once a turn: 100 halved two or three times a turn, and the files in turns
# then spent 3-6 % less than fixed polling, at up to 0.06x more lag).
# 0.4 missed the turns of 1,000-task files; no steady mix reached 0.3.
_TURN_HALF_LIFE = 25.0
_TURN_SHIFT = 0.3
_TURN_GAP = 300
# An unknown model name not seen yet is planned on this share of the pooled
# estimate, the rest the pooled prior (see DurationLearner.masses).
_UNSEEN_POOLED = 0.75
# One service's renders speed up and slow down together (its load, its
# hardware), whatever the model: a model with few finishes of its own starts
# from its prior moved as far (in log-seconds) as the others' fitted medians
# moved from theirs, weighed by their finishes. Their move counts half at
# _SHARED_SPEED_OTHERS finishes of theirs, and fades as the model's own come
# (half at _SHARED_SPEED_OWN), its own fit then ruling. A service 0.2-1.6x
# the documented times (72 files of 100-1,000 tasks): 20 missed the goal, 8
# with a p95 over fixed polling's; 17 and 3 with it. 230 Veo-like files: 23
# and 21 missed (mean lag 0.571x and 0.569x); two models moved apart (one
# at 0.5x, the other at 1x; 1x and 2x: 48 files) 0.556x and 0.557x.
_SHARED_SPEED_OTHERS = 10.0
_SHARED_SPEED_OWN = 10.0
_R = TypeVar("_R")
# The end of a rebuild's steps (see AdaptiveSchedule.step).
_DONE = object()
# The most a delay is jittered by, in seconds: under half a grid step, so that a
# jittered poll is still recognised as the planned one (see next_delay).
_MAX_JITTER = 0.4 * GRID
# An explorer (see AdaptiveSchedule.explores) polls at ages below this.
_EXPLORE_UNTIL = 30.0


# The largest median a DurationPrior takes (about 30 years): far beyond any
# render, and far enough from where the numbers overflow (1e308 did).
_MAX_PRIOR_MEDIAN = 1e9
# The widest spread it takes (log-sd: a factor of 22,000 either side): far
# beyond any guess; 1e308 overflowed in the first table, which a session
# builds in a callback, so its wait polled on blind to its timeout.
_MAX_PRIOR_SIGMA = 10.0
# The longest max_gap an AdaptivePolicy takes (see its check).
_MAX_GAP = 600.0
# ...and the smallest: the fit divides by it (and the learner's own estimate
# never goes below _SIGMA_FLOOR).
_MIN_PRIOR_SIGMA = 0.001


@attrs.frozen
class DurationPrior:
    """A log-normal guess at a model's generation time, before data.

    :param median: median seconds from creation to a terminal status.
    :param sigma: standard deviation of log-seconds (0.001 to 10).
    """

    median: float = attrs.field()
    sigma: float = attrs.field()

    def __attrs_post_init__(self) -> None:
        for name in ("median", "sigma"):
            value = check_real(name, getattr(self, name))
            if not is_finite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, not {shown(value)}")
        # (A median of 1e308 overflowed later, in the first table, with a
        # bare OverflowError.)
        if self.median > _MAX_PRIOR_MEDIAN:
            raise ValueError(
                f"median must be at most {_MAX_PRIOR_MEDIAN:g} s, not {shown(self.median)}"
            )
        if self.sigma > _MAX_PRIOR_SIGMA:
            raise ValueError(f"sigma must be at most {_MAX_PRIOR_SIGMA:g}, not {shown(self.sigma)}")
        if self.sigma < _MIN_PRIOR_SIGMA:
            # (1e-160 overflowed in a rebuild, a loop callback: the wait
            # polled blind until its last look.)
            raise ValueError(
                f"sigma must be at least {_MIN_PRIOR_SIGMA:g}, not {shown(self.sigma)}"
            )


#: The prior of a model with no prior of its own, and of ``model=None``.
PooledPrior = DurationPrior(median=200.0, sigma=0.6)

_VEO3_FAST = DurationPrior(median=150.0, sigma=0.35)
_VEO3 = DurationPrior(median=300.0, sigma=0.35)
_VEO3_LITE = DurationPrior(median=120.0, sigma=0.4)

#: Documented priors, from the service's pages ("veo3_fast usually 2-3
#: minutes, veo3 4-6, extends and 4K up to 10+"); each weighs
#: ``AdaptivePolicy.prior_weight`` observations. ``fast``, ``quality`` and
#: ``lite`` are the names the extend endpoint (and the pages) give the same
#: three models: a record of an extend names its model so, and they start
#: from that model's prior (each name still learns on its own).
DEFAULT_PRIORS: Mapping[str, DurationPrior] = {
    "veo3_fast": _VEO3_FAST,
    "veo3": _VEO3,
    "veo3_lite": _VEO3_LITE,
    # Without these, such names started from the wide pooled prior (200 s):
    # of 120 files of them (200-1,000 tasks; a service 0.5-2x the documented
    # times; 0 or 5 % early failures), 31 missed the goal, 15 with them.
    "fast": _VEO3_FAST,
    "quality": _VEO3,
    "lite": _VEO3_LITE,
}


def _check_count(name: str, value: object, minimum: int = 0) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum``.

    :raises NotANumberError: (a TypeError and a ValueError, as every refused
        number of the package) for anything but an int.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise NotANumberError(f"{name} must be an int, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {shown(value)}")
    return value


def _check_rng(rng: object) -> None:
    """``rng`` must be a :class:`random.Random` (the draws are replayable)."""
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, not {type(rng).__name__}")


def _check_number(
    name: str, value: object, minimum: float, *, inclusive: bool = True, finite: bool = True
) -> float:
    # The common case first, without calls: a finite float in range (the
    # learner checks what every poll tells it).
    if type(value) is float and value < math.inf and (
        value > minimum or (inclusive and value == minimum)
    ):
        return value
    number = check_real(name, value)
    endless = not is_finite(number)
    if endless and finite:
        raise ValueError(f"{name} must be finite, not {shown(number)}")
    if number < minimum or (not inclusive and number == minimum):
        relation = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be {relation} {minimum:g}, not {shown(number)}")
    if endless:  # (finite=False: NaN or infinite, an int too large for a float too)
        return math.nan if number != number else math.inf
    return float(number)


def _field(default: float, minimum: float, *, inclusive: bool = True) -> Any:
    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        _check_number(attribute.name, value, minimum, inclusive=inclusive)

    return attrs.field(default=default, validator=check)


def _check_timeout(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _check_number(attribute.name, value, 0, inclusive=False)


def _check_priors(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, DurationPrior) for k, v in value.items()
    ):
        raise TypeError(f"{attribute.name} must map model names to DurationPrior, not {value!r}")


@attrs.frozen
class AdaptivePolicy:
    """How a wait polls when the schedule learns from finished tasks.

    Immutable; ``timeout`` and ``not_found_grace`` mean what they mean on
    :class:`~veo_async.PollPolicy`, so a wait can take either.

    :param timeout: default overall deadline of a wait in seconds, or None.
    :param not_found_grace: seconds during which "record is null" answers mean
        "not visible yet" (counted from the first such answer).
    :param budget_interval: spend, per task, at most as many requests as
        polling every this many seconds would (default 30 s, the Veo docs'
        advice): each task's first request, and of those beyond it 95 % on
        the learned distribution at first, then steered towards 97.5 % by
        what finished tasks really cost (the spend ledger) - but placed where
        completions are likely.
    :param min_gap: shortest gap between two polls of a task, in seconds
        (from the answer to one to the next; at least 0.1).
    :param max_gap: longest gap once past the bulk of generation times (the
        learned 90th percentile, or twice the prior's median if that comes
        first), and the gap past the table's horizon (the 99.95th percentile);
        at most 600 s. Polls are planned on a grid of 2 s, so a multiple of
        2 s must lie between ``min_gap`` and ``max_gap`` (``max_gap`` at
        least 2 s): ``min_gap=0.5, max_gap=4`` is accepted, ``max_gap=1``
        or ``min_gap=3, max_gap=3`` are refused with a ValueError saying so.
        Inside the bulk the gaps are the optimum's (short where renders
        finish, one long gap across a stretch where none do).
    :param jitter: each delay moves by up to ``+- jitter`` of itself, at most
        0.8 s (uniform, seeded), so polls keep to their planned times.
    :param early_mass: the prior's share of fast failures (5-40 s), worth
        ``prior_weight`` tasks: keeps an early probe until the data say
        whether fast failures happen, learned from every model's tasks
        together (0: none until some are seen).
    :param late_lag: lag beyond which each second costs ``1 + late_weight``
        seconds in the optimisation: keeps the p95 lag at or below fixed
        polling's where completions are sparse (early failures, long tails).
    :param late_weight: see ``late_lag`` (0: plain mean lag).
    :param priors: a :class:`DurationPrior` per model name; other names
        start from the pooled estimate of every model mixed with the wide
        pooled prior (a quarter), then learn their own.
    :param prior_weight: how many observations a prior is worth.
    :param memory: observations per model beyond which old ones count half
        (the histogram is halved), so the estimate follows a slowly drifting
        service; a drift the latest finishes show against the table halves
        it sooner (see the module docstring).
    :param rebuild_every: the tables are rebuilt when a model's evidence
        (finished tasks and polls that found one running) has grown by half,
        or by this much.
    :param seed: seed for the schedule's random draws (None: fresh): the
        jitter, and the pick between the two nearest solutions that spends
        the budget exactly (so two seeds may differ by a grid step too).
    :param explorers: how many of the first tasks, planned while no task has
        finished yet, are also polled at ages ``min_gap``, twice that, and so
        on up to 30 s (see :meth:`AdaptiveSchedule.explores`): a service
        far faster than the priors say (or a test server finishing tasks in
        seconds) is then seen at once, not at the schedule's first poll
        (40 s for a fresh veo3_fast task). 0: none.
    """

    timeout: float | None = attrs.field(default=900.0, validator=_check_timeout)
    not_found_grace: float = _field(30.0, 0)
    budget_interval: float = _field(30.0, 1)
    min_gap: float = _field(2.0, 0.1)
    max_gap: float = _field(30.0, 1)
    jitter: float = _field(0.02, 0)
    early_mass: float = _field(0.06, 0)
    late_lag: float = _field(24.0, 0)
    late_weight: float = _field(0.5, 0)
    priors: Mapping[str, DurationPrior] = attrs.field(
        default=DEFAULT_PRIORS, validator=_check_priors
    )
    prior_weight: float = _field(20.0, 0)
    memory: float = _field(4096.0, 16)
    rebuild_every: int = attrs.field(default=20_000)
    seed: int | None = attrs.field(default=None)
    explorers: int = attrs.field(default=1)

    def __attrs_post_init__(self) -> None:
        if self.max_gap < self.min_gap:
            raise ValueError(f"max_gap ({self.max_gap:g}) must be >= min_gap ({self.min_gap:g})")
        if self.max_gap > _MAX_GAP:
            # Each table's program weighs every gap up to max_gap from each
            # grid point: 3,000 s took 17-19 s of CPU for one task's tables.
            raise ValueError(
                f"max_gap must be at most {_MAX_GAP:g} s, not {shown(self.max_gap)} "
                "(for rarer polls, a PollPolicy)"
            )
        _check_count("explorers", self.explorers)
        if math.floor(self.max_gap / GRID) < max(1, math.ceil(self.min_gap / GRID)):
            # Polls are planned on a grid of GRID seconds: a gap can only be
            # a multiple of it, and none would lie between the two (max_gap 3
            # and min_gap 3 gave gaps of 4 s).
            raise ValueError(
                f"max_gap ({self.max_gap:g}) and min_gap ({self.min_gap:g}) must have a "
                f"multiple of {GRID:g} s between them (polls are planned on a {GRID:g} s grid)"
            )
        if self.jitter >= 0.5:
            raise ValueError(f"jitter must be < 0.5, not {self.jitter!r}")
        if self.early_mass >= 0.5:
            raise ValueError(f"early_mass must be < 0.5, not {self.early_mass!r}")
        _check_count("rebuild_every", self.rebuild_every, 1)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise TypeError(f"seed must be an int or None, not {self.seed!r}")

    def replace(self, **changes: Any) -> AdaptivePolicy:
        """A copy with some fields changed (validated like a new policy)."""
        return attrs.evolve(self, **changes)

    def learner(self) -> DurationLearner:
        """A fresh learner with this policy's priors and memory."""
        return DurationLearner(
            priors=self.priors,
            prior_weight=self.prior_weight,
            memory=self.memory,
            early_mass=self.early_mass,
        )

    def schedule(self, learner: DurationLearner | None = None) -> AdaptiveSchedule:
        """A schedule reading ``learner`` (a fresh one if None)."""
        return AdaptiveSchedule(self, self.learner() if learner is None else learner)

    def rng(self) -> random.Random:
        """The jitter's random source: seeded by ``seed`` (fresh if None)."""
        return random.Random(self.seed)


def _log_bin(seconds: float) -> int:
    """The learner's bin of a duration (durations under 1 s share bin 0)."""
    return min(int(math.log(max(seconds, 1.0)) / _LOG_BIN), _LOG_BINS - 1)


def _exposed_bins(start: float, end: float, end_bin: int | None = None) -> tuple[int, int]:
    """The first and last bins an interval a task ran through covers:
    consecutive intervals (0, a1], (a1, a2], ... cover each bin once (bins
    bin(start)+1 .. bin(end), and bin 0 for the first). ``end_bin``: bin(end),
    if the caller has it."""
    return (_log_bin(start) + 1 if start > 0 else 0), (
        _log_bin(end) if end_bin is None else end_bin
    )


class _TooSoon:
    """Finishes under an age no service finishes at (a success under a
    prior's floor, a failure under 5 s), against the tasks seen running
    past that age: while those finishes outnumber them, the server is a
    test server (or one far faster than documented), and their geometric
    mean says how fast it is."""

    __slots__ = ("age", "count", "logs", "past")

    def __init__(self, age: float) -> None:
        self.age = age
        self.count = 0.0
        self.logs = 0.0  # the sum of their log-seconds
        self.past = 0.0

    def finished(self, seconds: float) -> bool:
        """Count a finish at ``seconds`` if it is under the age; whether it was."""
        if seconds >= self.age:
            return False
        self.count += 1.0
        # (A record's times are whole seconds: a finish at 0 s is one at under 1 s.)
        self.logs += math.log(max(1.0, seconds))
        return True

    def ran(self, start: float, end: float, tasks: float = 1.0) -> None:
        """A task was running from age ``start`` through ``end``: past the
        age if that interval crosses it (``tasks`` -1 takes one back)."""
        if start < self.age <= end:
            self.past += tasks

    def halve(self) -> None:
        self.count *= 0.5
        self.logs *= 0.5
        self.past *= 0.5

    def geometric_mean(self) -> float | None:
        """The finishes' geometric mean (a second at least) while they
        outnumber the tasks seen running past the age; else None."""
        if self.count <= self.past:
            return None
        return math.exp(self.logs / self.count)


class _Histogram:
    """What one model's tasks have shown, in log-spaced bins (bounded memory).

    ``events`` counts terminal statuses by generation time; ``reach`` is a
    difference array of *exposure*: how many tasks were seen still running
    through each bin. Together they give a survival (Kaplan-Meier) estimate,
    which counts the tasks still running as evidence too: a batch whose
    renders take twice the prior's time is learned from the first polls past
    the prior's bulk, not only once the first of them has finished, and
    finished tasks alone (the fast ones come first) do not bias it short.
    """

    __slots__ = (
        "count",
        "events",
        "exposures",
        "failures",
        "longest",
        "quick",
        "reach",
        "recent",
        "tasks",
        "weight",
    )

    def __init__(self, quick_floor: float = 0.0) -> None:
        #: The successes under the age the prior calls a success impossible
        #: (``quick_floor``), against the tasks seen running past it (see
        #: :meth:`rebased`).
        self.quick = _TooSoon(quick_floor)
        #: The latest intervals a task was watched through: (from age, to
        #: age, whether it finished at the end), for the drift check.
        self.recent: collections.deque[tuple[float, float, bool]] = collections.deque(
            maxlen=_DRIFT_WINDOW
        )
        self.events = array("d", bytes(8 * _LOG_BINS))
        self.reach = array("d", bytes(8 * (_LOG_BINS + 1)))
        self.weight = 0.0  # sum of the events (decays with halving)
        self.count = 0  # terminal statuses ever
        self.exposures = 0  # running intervals ever
        self.tasks = 0  # tasks ever (each one's first interval starts at 0)
        self.failures = 0
        self.longest = 0.0  # the oldest age a task was seen at, running or finished

    def expose(self, start: float, end: float, bins: tuple[int, int] | None = None) -> None:
        """A task was running from age ``start`` through ``end`` (seconds).

        :param bins: ``_exposed_bins(start, end)``, when the caller has them
            (a poll exposes its interval to two histograms: its model's and
            the pooled one; two logarithms less per poll).
        """
        lo, hi = _exposed_bins(start, end) if bins is None else bins
        if hi < lo:
            return
        if end > self.longest:
            self.longest = end
        self.reach[lo] += 1.0
        self.reach[hi + 1] -= 1.0
        self.exposures += 1
        self.tasks += start == 0
        self.quick.ran(start, end)

    def retract(self, finished: float, seen_running: float) -> None:
        """A task seen running at age ``seen_running`` finished at
        ``finished``, earlier: the ages it was polled at were wrong (a
        createTime read in another zone, a server clock far off), so its
        exposure past its finish is taken back. Kept, it made the task one
        that ran through every later bin: a heavy tail (log-sd 2 for a
        model of 0.3) that the tasks aged right were then planned on."""
        lo = _log_bin(finished) + 1
        hi = _log_bin(seen_running)
        if hi >= lo:
            self.reach[lo] -= 1.0
            self.reach[hi + 1] += 1.0
        self.quick.ran(finished, seen_running, -1.0)  # (it was not running there after all)

    def add(self, seconds: float, failed: bool, memory: float, bin_: int) -> None:
        """A terminal status at ``seconds`` (in log bin ``bin_``, which the
        caller has: a finish is added to two histograms and the ledger)."""
        self.events[bin_] += 1.0
        self.weight += 1.0
        self.count += 1
        self.failures += failed
        if not failed:
            self.quick.finished(seconds)
        if self.weight > memory:
            self.halve()  # follows drift, O(bins) every ~memory/2 calls

    def halve(self) -> None:
        """Old evidence counts half."""
        for i in range(_LOG_BINS):
            self.events[i] *= 0.5
            self.reach[i] *= 0.5
        self.reach[_LOG_BINS] *= 0.5
        self.weight *= 0.5
        self.quick.halve()

    @property
    def rebased(self) -> bool:
        """Whether successes the prior calls impossible (under ``quick_floor``)
        outnumber the tasks seen still running past that age: the service
        is far faster than its prior (a test server rendering in seconds),
        and the prior is to be moved to them (:meth:`rebased_prior`)."""
        return self.quick.geometric_mean() is not None

    def rebased_prior(self, prior: DurationPrior) -> DurationPrior | None:
        """``prior`` moved to the successes under ``quick_floor`` (their
        geometric mean, with ``prior``'s spread) while :attr:`rebased`; else None.

        The fit (:meth:`fit`) cannot get there: it moves a prior at most
        20-fold, and keeps a floor of mass that explains a few early
        finishes as failures; and the survival estimate weighs one finish
        against the prior's 20 tasks. So a session whose first task was
        found done at 2 s by the explorer kept polling its next tasks at
        24-40 s until some ten had finished.
        """
        mean = self.quick.geometric_mean()
        return None if mean is None else _bounded_prior(mean, prior.sigma)

    def fit(self, prior: DurationPrior, prior_weight: float) -> DurationPrior:
        """The prior moved to where the data say: its median fitted to every
        finished *and still running* task (censored maximum likelihood, with
        the prior's sigma; the prior's own median counts as ``prior_weight x
        _FIT_TRUST`` observations).

        It rules where data are thin: before the first finish, and past the
        oldest task seen running. A floor of ``_FIT_FLOOR`` uniform mass keeps
        a few early failures from dragging the median down.
        """
        mu0, sigma = math.log(prior.median), prior.sigma
        shifts = _FIT_SHIFTS
        scale = sigma * math.sqrt(2)
        # CDF at bin edges for the prior shifted by -shifts..+shifts bins: one array.
        size = _LOG_BINS + 2 * shifts + 1
        cdf = [
            0.5 * (1 + math.erf(((m - shifts) * _LOG_BIN - mu0) / scale)) for m in range(size + 1)
        ]
        floor = _FIT_FLOOR / _LOG_BINS
        log_mass = [math.log((1 - _FIT_FLOOR) * (cdf[m + 1] - cdf[m]) + floor) for m in range(size)]
        log_left = [math.log((1 - _FIT_FLOOR) * (1 - cdf[m + 1]) + floor) for m in range(size)]
        # Exposure starts at bin 0 for every task, so -reach[k+1] tasks left after
        # bin k: those that did not finish there were still running (censored).
        terms = []
        for k in range(_LOG_BINS):
            finished = self.events[k]
            running = max(0.0, -self.reach[k + 1] - finished)
            if finished > 0 or running > 0:
                terms.append((k, finished, running))
        if not terms:
            return prior

        def likelihood(j: int) -> float:
            offset = shifts - j  # index m of bin k's edge for shift j
            value = -0.5 * prior_weight * _FIT_TRUST * (j * _LOG_BIN / sigma) ** 2
            for k, finished, running in terms:
                value += finished * log_mass[k + offset] + running * log_left[k + offset]
            return value

        # Coarse to fine: every 5th shift, then the neighbours of the best (the
        # likelihood is smooth at this scale); a quarter of the work.
        coarse = max(range(-shifts, shifts + 1, 5), key=likelihood)
        fine = range(max(-shifts, coarse - 4), min(shifts, coarse + 4) + 1)
        best_shift = max(fine, key=likelihood)
        return _bounded_prior(math.exp(mu0 + best_shift * _LOG_BIN), sigma)

    def survival_masses(self, base: list[float], prior_weight: float) -> list[float]:
        """The distribution of log-seconds: the prior ``base`` (worth
        ``prior_weight`` tasks followed from creation) updated by the data.

        Per bin, hazard = (events + prior_weight x prior mass) / (tasks at risk
        + prior_weight x prior survival): the prior rules where data are thin,
        the data where many tasks were watched. Events are smoothed by a
        Gaussian kernel in log-seconds whose width shrinks as data accumulate.
        """
        events = _smooth(self.events, self.weight) if self.weight > 0 else None
        out = [0.0] * _LOG_BINS
        at_risk, prior_left, left = 0.0, 1.0, 1.0
        reach = self.reach
        for k in range(_LOG_BINS):
            at_risk += reach[k]
            p = base[k]
            seen = events[k] * self.weight if events is not None else 0.0
            denominator = max(at_risk, seen) + prior_weight * prior_left
            hazard = (seen + prior_weight * p) / denominator if denominator > 1e-12 else 0.0
            prior_left = max(0.0, prior_left - p)
            mass = left * min(1.0, hazard)
            out[k] = mass
            left -= mass
        out[-1] += max(0.0, left)
        return out


class DurationLearner:
    """Online per-model estimate of generation times, from a documented prior.

    It learns from finished tasks (:meth:`observe`) and from polls that found
    a task still running (:meth:`survived`): a survival estimate, so tasks
    that take longer than expected are learned while they run.

    Memory is a fixed pair of histograms per model (~7 KB) whatever the
    number of observations; at most ``max_models`` names are tracked on their
    own (others feed the pooled estimate only).

    :param priors: a :class:`DurationPrior` per model name.
    :param prior_weight: how many observations a prior is worth.
    :param memory: per-model weight beyond which the histogram is halved.
    :param max_models: model names tracked separately.
    :param early_mass: the prior's share of fast failures (5-40 s), before
        :meth:`fast_failure_share` has learned it.
    """

    def __init__(
        self,
        *,
        priors: Mapping[str, DurationPrior] = DEFAULT_PRIORS,
        prior_weight: float = 20.0,
        memory: float = 4096.0,
        max_models: int = 32,
        early_mass: float = 0.06,
    ) -> None:
        if not isinstance(priors, Mapping) or not all(
            isinstance(k, str) and isinstance(v, DurationPrior) for k, v in priors.items()
        ):
            raise TypeError(f"priors must map model names to DurationPrior, not {priors!r}")
        self._priors = dict(priors)
        self._early_mass = _check_number("early_mass", early_mass, 0)
        # Tasks whose fate through the early span is known (seen running past
        # it, or finished), and those of them that failed within it: every
        # model's, pooled (see fast_failure_share).
        self._early_known = 0.0
        self._early_failed = 0.0
        # Instant failures (see _INSTANT_FAILURE), against the tasks seen
        # running past that age: every model's, pooled (see failure_scale).
        self._instant = _TooSoon(_INSTANT_FAILURE)
        self._prior_weight = _check_number("prior_weight", prior_weight, 0)
        self._memory = _check_number("memory", memory, 16)
        self._max_models = _check_count("max_models", max_models)
        self._pooled = _Histogram(_impossible_under(PooledPrior))
        self._models: dict[str, _Histogram] = {}
        # Each model's fitted move from its prior, with the state it was fitted on.
        self._moves: dict[str, tuple[tuple[int, int, float], float]] = {}
        self._ledger = _SpendLedger()
        # The mix of models of the tasks seen (at their first polls): its
        # recent counts set the price; the latest ones against them, the
        # turns. The same of the tasks created, when the caller says (see
        # created): a turn must show there too.
        self._polled = _MixWatch()
        self._created = _MixWatch()
        # First polls of tasks not told to created(), fading as first polls
        # come: while under half the recent ones, turns need a licence.
        self._untold = _FadingCounts(_MIX_HALF_LIFE)
        self._created_high = False  # the mix of creations is turning now
        self._licensed = False  # it turned since the last turn counted
        self._turned_at: int | None = None  # (the polled clock)
        self._turns = 0

    def _histogram(self, model: str) -> _Histogram | None:
        hist = self._models.get(model)
        if hist is None and len(self._models) < self._max_models:
            hist = self._models[model] = _Histogram(_impossible_under(self._own_prior(model)))
        return hist

    def observe(
        self,
        model: str | None,
        seconds: float,
        failed: bool = False,
        *,
        running_until: float = 0.0,
        polls: int = 0,
        fixed_polls: int = 0,
        announced: bool = False,
    ) -> None:
        """Record that a task of ``model`` reached a terminal status ``seconds`` after creation.

        :param running_until: the age at which it was last seen running, as
            told to :meth:`survived` (0 if never): its exposure from there to
            ``seconds`` is added. It may pass ``seconds`` (our clock and the
            server's disagree): pass it as told, not clamped: what
            :meth:`survived` counted past ``seconds`` is then taken back.
        :param polls: for a task followed from its creation, the requests its
            wait made; with ``fixed_polls``, those polling every budget
            interval would have made: the spend ledger's entry (see
            :meth:`spend_ratio`). 0: not a ledger entry.
        :param announced: the task was told to :meth:`created` (see there).
        :raises ValueError: for negative, infinite or NaN seconds, negative polls.
        :raises TypeError: for a non-numeric ``seconds``, a non-string model,
            polls that are not ints, a ``failed`` that is not a bool.
        """
        seconds = _check_number("seconds", seconds, 0)
        running_until = _check_number("running_until", running_until, 0)
        if model is not None and not isinstance(model, str):
            raise TypeError(f"model must be a str or None, not {model!r}")
        polls, fixed_polls = _check_count("polls", polls), _check_count("fixed_polls", fixed_polls)
        if not isinstance(failed, bool):
            # bool("no") is True: a text or a number is refused, not guessed.
            raise TypeError(f"failed must be True or False, not {failed!r}")
        # One logarithm for every count a finish adds to (two histograms, the ledger).
        finish_bin = _log_bin(seconds)
        if polls and fixed_polls:
            self._ledger.add(finish_bin, polls, fixed_polls, self._memory)
        if running_until < _EARLY_SPAN[1]:
            self._early_fate(failed and seconds <= _EARLY_SPAN[1])
        if not (failed and self._instant.finished(seconds)):
            self._instant.ran(running_until, seconds)
        own = self._histogram(model) if model is not None else None
        bins = None
        if running_until <= seconds:
            bins = _exposed_bins(running_until, seconds, finish_bin)
        for hist in (self._pooled, own):
            if hist is not None:
                if bins is None:
                    hist.retract(seconds, running_until)
                else:
                    hist.expose(running_until, seconds, bins)
                hist.add(seconds, failed, self._memory, finish_bin)
        if own is not None:  # (the pooled estimate is never checked for drift)
            own.recent.append((min(running_until, seconds), seconds, True))
        if running_until == 0:
            self._note_task(model, announced)

    def survived(
        self, model: str | None, since: float, age: float, *, announced: bool = False
    ) -> None:
        """Record that a task of ``model`` was still running at ``age`` seconds,
        having last been seen running at ``since`` (0 at its first poll).

        A run tells each of its polls once, in order, so each task counts once
        per age: see :class:`_Histogram`. ``announced``: the task was told to
        :meth:`created` (see there).
        """
        if model is not None and not isinstance(model, str):
            raise TypeError(f"model must be a str or None, not {model!r}")
        since = _check_number("since", since, 0, finite=False)
        age = _check_number("age", age, 0, finite=False)
        if not since < age < math.inf:  # an empty or endless interval (NaN too) teaches nothing
            return
        bins = _exposed_bins(since, age)
        if model is not None and (hist := self._histogram(model)) is not None:
            hist.expose(since, age, bins)
            hist.recent.append((since, age, False))
        self._pooled.expose(since, age, bins)
        if since < _EARLY_SPAN[1] <= age:
            self._early_fate(False)
        self._instant.ran(since, age)
        if since == 0:
            self._note_task(model, announced)

    def _early_fate(self, failed: bool) -> None:
        """A task's fate through the early span became known: it failed
        within it, or it did not."""
        self._early_known += 1.0
        self._early_failed += failed
        if self._early_known > self._memory:
            self._early_known *= 0.5
            self._early_failed *= 0.5
            self._instant.halve()

    def fast_failure_share(self) -> float:
        """The share of tasks that fail within 40 s of their creation, of
        every model: the prior's ``early_mass`` worth ``prior_weight`` tasks,
        and the tasks whose fate through 40 s is known (seen running past
        it, or finished). Fast failures come from the prompt or the inputs,
        not the model: it is each model's prior share of them, so a model
        with few tasks of its own is probed early when the others fail
        early."""
        weight = self._prior_weight
        known = weight + self._early_known
        if known <= 0:
            return self._early_mass  # prior_weight 0 and nothing known yet
        return (self._early_mass * weight + self._early_failed) / known

    def failure_scale(self) -> float | None:
        """While instant failures (under 5 s, every model's) outnumber the
        tasks seen running past 5 s, how much sooner than the documented
        fast failures (5-40 s: their geometric middle, 14 s) they come: the
        geometric mean of their times (a second at least) over that middle;
        else None. A test server failing tasks at once; a service fails
        none so soon (see ``_INSTANT_FAILURE``)."""
        seen = self._instant.geometric_mean()
        return None if seen is None else seen / math.sqrt(_EARLY_SPAN[0] * _EARLY_SPAN[1])

    def created(self, model: str | None) -> None:
        """A task of ``model`` was created (by the caller, who knows its model
        from the start); its polls then say ``announced=True``
        (:meth:`survived`, :meth:`observe`). Optional: while at least half
        the recent first polls are of tasks told so, a turn of the mix of
        models seen at first polls counts only if the mix of the tasks
        created turned since the last turn counted (each turn of creations
        allows one). Tasks created in a burst are first polled model by model
        (each model's first delay is its own), which reads as a turn at their
        first polls, not in the order they were created. Like the polls, it
        gives ``model`` a histogram of its own if ``max_models`` allows.

        :raises TypeError: for a model that is not a str or None.
        """
        if model is not None and not isinstance(model, str):
            raise TypeError(f"model must be a str or None, not {model!r}")
        watch = self._created
        watch.count(self._mix_key(model))
        high = watch.shift(self._models) > _TURN_SHIFT
        if high and not self._created_high:
            self._licensed = True
        self._created_high = high

    def _note_task(self, model: str | None, announced: bool) -> None:
        """A task of ``model`` was seen for the first time (see :meth:`recent_tasks`)."""
        watch = self._polled
        watch.count(self._mix_key(model))
        if not announced:
            self._untold.add(None, watch.clock)
        if self._turned_at is not None and watch.clock - self._turned_at < _TURN_GAP:
            return
        if self.mix_shift() <= _TURN_SHIFT:
            return
        told = self._untold.get(None, watch.clock) < 0.5 * watch.recent.get(None, watch.clock)
        if told and not self._licensed:
            return  # a burst's first polls, not a turn (see created)
        self._licensed = False
        self._turned_at = watch.clock
        self._turns += 1
        self._ledger.halve()
        # The price is set for the mix the turn brought from now on: left to
        # fade in (half-life 100 tasks), the model coming in was polled for
        # a hundred tasks and more at the price set for the one leaving, and
        # files of 1,000 tasks in two turns (veo3 then veo3_fast) spent
        # 1.003-1.009x fixed polling's requests (now 0.98-0.99x, same lag).
        watch.recent.take(watch.latest, watch.clock)

    def _mix_key(self, model: str | None) -> str | None:
        """``model``'s own key in the mixes, or None for a model without a
        histogram of its own (one is made if ``max_models`` allows)."""
        return model if model is not None and self._histogram(model) is not None else None

    def mix_shift(self) -> float:
        """How far the mix of models over the latest tasks seen (each counting
        half once 25 more were first polled) is from the recent one the price
        is set for (half-life 100): half the summed absolute difference of the
        models' shares (those without a histogram of their own as one model):
        near 0 for a steady mix, up to about 0.47 as the mix turns completely
        to a model not seen lately."""
        return self._polled.shift(self._models)

    @property
    def creations(self) -> int:
        """Tasks told to :meth:`created`."""
        return self._created.clock

    @property
    def turns(self) -> int:
        """Turns of the mix of models seen so far (:meth:`mix_shift` over 0.3,
        at most one per 300 tasks; while most recent first polls are of tasks
        told to :meth:`created`, each needs a turn of their creations since
        the last one): each halved the spend ledger's entries."""
        return self._turns

    def _seen(self, model: str | None) -> _Histogram | None:
        """What was seen of ``model`` (of every model for None; None: nothing)."""
        return self._pooled if model is None else self._models.get(model)

    def latest_intervals(self, model: str | None) -> Sequence[tuple[float, float, bool]]:
        """The latest intervals tasks of ``model`` were watched through, at
        most 500, oldest first: ``(from age, to age, finished at its end)``,
        one per poll that found a task running or finished (see
        :meth:`survived` and :meth:`observe`); emptied by :meth:`forget`.
        Empty for None: the pooled estimate is never checked for drift, its
        intervals would mix the models of the moment."""
        hist = self._seen(model)
        return () if hist is None else hist.recent

    def longest(self, model: str | None) -> float:
        """The oldest age a task of ``model`` (of any model for None) was
        seen at, running or finished, in seconds: how far the data reach; 0
        before the first."""
        hist = self._seen(model)
        return 0.0 if hist is None else hist.longest

    def forget(self, model: str | None) -> None:
        """Halve what was learned of ``model`` (every model's pooled estimate
        for None): the service has drifted, the evidence before counts half."""
        hist = self._seen(model)
        if hist is not None:
            hist.halve()
            hist.recent.clear()

    def count(self, model: str | None) -> int:
        """Terminal statuses seen for ``model`` (every model's for None)."""
        hist = self._seen(model)
        return 0 if hist is None else hist.count

    def evidence(self, model: str | None) -> int:
        """Terminal statuses plus running intervals seen for ``model``: what
        the schedule's tables are rebuilt on."""
        hist = self._seen(model)
        return 0 if hist is None else hist.count + hist.exposures

    def __repr__(self) -> str:
        # What was learned, model by model: tasks seen and finished.
        seen = ", ".join(
            f"{model!r}: {hist.tasks} tasks, {hist.count} finished"
            for model, hist in self._models.items()
        )
        return f"<DurationLearner {{{seen}}}>"

    def tasks(self, model: str | None) -> int:
        """Tasks seen for ``model`` (every model's for None): each counts once,
        at its first poll, running or finished."""
        hist = self._seen(model)
        return 0 if hist is None else hist.tasks

    def recent_tasks(self, model: str | None) -> float:
        """Tasks seen for ``model`` (every model's for None), each counting
        half as much once ``_MIX_HALF_LIFE`` (100) more tasks were seen: the
        mix of models the schedule's shared price is set for is the recent
        one, so models that come in turns are each priced for themselves."""
        return self._polled.recent.get(model, self._polled.clock)

    def failures(self, model: str | None) -> int:
        """Failed observations seen for ``model`` (every model's for None)."""
        hist = self._seen(model)
        return 0 if hist is None else hist.failures

    def spend_ratio(self) -> float | None:
        """Requests of the finished tasks followed from creation over those of
        fixed polling, each generation time weighed as the estimated
        distribution (every model's) weighs it; None until enough such tasks
        finished to cover nearly all of it.

        Finished tasks alone are the short ones first (the long ones still
        run), and a schedule spends less than fixed polling on short tasks and
        more on long ones: counting them as they come would read as savings.
        Per stratum of generation time the tasks that finished are a fair
        sample, so each stratum's mean spend counts as much as the estimate
        says such tasks are common.
        """
        means = self._ledger_means()
        return None if means is None else means[0] / means[1]

    def extra_spend_ratio(self) -> float | None:
        """As :meth:`spend_ratio`, but of the requests beyond each task's
        first: what a schedule chooses to spend (every wait makes at least one
        request, fixed polling too). None also where fixed polling makes
        hardly more than one request a task (renders shorter than its interval).
        """
        means = self._ledger_means()
        if means is None or means[1] - 1.0 < _EXTRA_AT_LEAST:
            return None
        return (means[0] - 1.0) / (means[1] - 1.0)

    def _ledger_means(self) -> tuple[float, float] | None:
        """Requests per task of the ledger's tasks and of fixed polling, each
        stratum weighed by the estimate (see :meth:`spend_ratio`); None until
        the ledger speaks."""
        ledger = self._ledger
        if ledger.tasks < _LEDGER_TASKS:
            return None
        masses = self.masses(None)
        # covered: the strata with entries, which the means are of; spanned:
        # those and the empty ones under the slowest of them (see _LEDGER_COVER).
        covered = spanned = empty = spent = fixed = 0.0
        for stratum, count in enumerate(ledger.count):
            start = stratum * _LEDGER_STRATUM
            mass = sum(masses[start : start + _LEDGER_STRATUM])
            if count <= 0:
                empty += mass
                continue
            spanned += empty + mass
            empty = 0.0
            covered += mass
            spent += mass * ledger.spent[stratum] / count
            fixed += mass * ledger.fixed[stratum] / count
        if spanned < _LEDGER_COVER or fixed <= 0:
            return None
        return spent / covered, fixed / covered

    def as_prior(self, model: str | None) -> DurationPrior | None:
        """What was learned of ``model``, as a :class:`DurationPrior` to start a
        later session from (None until a task of it has finished).

        The log-normal with the estimate's median and spread (half the
        distance between its 16th and 84th percentiles in log-seconds, so a
        few early failures or long tails do not widen it): a worker that
        restarts, or a fleet's new member, then plans its first tasks where
        this session's finished instead of where the documentation says (see
        :meth:`learned_priors`).
        """
        if model is not None and not isinstance(model, str):
            raise TypeError(f"model must be a str or None, not {model!r}")
        if self.count(model) == 0:
            return None
        low, median, high = _log_quantiles(self.masses(model), (0.16, 0.5, 0.84))
        return DurationPrior(
            median=math.exp(median), sigma=max(_SIGMA_FLOOR, 0.5 * (high - low))
        )

    def learned_priors(self) -> dict[str, DurationPrior]:
        """:meth:`as_prior` of every model tracked on its own that has a
        finished task: what to start a later session from::

            learned = veo.learner.learned_priors()
            policy = AdaptivePolicy(priors={**AdaptivePolicy().priors, **learned})
        """
        out = {}
        for model in self._models:
            prior = self.as_prior(model)
            if prior is not None:
                out[model] = prior
        return out

    def masses(self, model: str | None) -> list[float]:
        """The estimated distribution of log-seconds: one probability per 2 % bin.

        The prior (the model's, moved as far as the other models'
        estimates moved from their priors while it has few finishes of its
        own; else :data:`PooledPrior`), fitted to the model's data, weighs
        ``prior_weight`` tasks; see
        :meth:`_Histogram.survival_masses`. A name with no prior and nothing
        seen yet gets the pooled estimate of every model, three quarters,
        and the pooled prior, a quarter.
        """
        hist = self._seen(model)
        prior = self._priors.get(model) if model is not None else None
        seen = hist is not None and (hist.weight > 0 or hist.exposures > 0)
        if prior is None and model is not None and not seen:
            # An unknown name, unseen: what every model looks like, or the
            # pooled prior (median 200 s, wide): a new name may be a model
            # unlike the others, and until its first poll tells, every task
            # of it created meanwhile waits its first delay.
            pooled = self.masses(None)
            wide = self._prior_masses(PooledPrior, 0)
            return [
                _UNSEEN_POOLED * a + (1.0 - _UNSEEN_POOLED) * b
                for a, b in zip(pooled, wide, strict=True)
            ]
        own = self._own_prior(model)
        rebased = self._rebase_source(model).rebased_prior(own)
        # The prior's fast failures come as much sooner as its renders do: a
        # service 100x faster than documented fails in a second, not in
        # 5-40 s. (Left there, that share alone, 6 %, held a task of 1 s
        # renders to one poll at 34 s, where fixed 30 s polling's one
        # request a task allowed no earlier poll.)
        early_scale = 1.0 if rebased is None else rebased.median / own.median
        instant = self.failure_scale()
        if instant is not None:
            early_scale = min(early_scale, instant)
        if rebased is not None:
            prior = rebased
        elif prior is not None:
            prior = self._moved_like_the_others(model, prior, hist)
        prior = prior or PooledPrior
        if hist is not None and seen:
            prior = hist.fit(prior, self._prior_weight)
        base = self._prior_masses(prior, hist.count if hist is not None else 0, early_scale)
        if hist is None or not seen:
            return base
        return hist.survival_masses(base, self._prior_weight)

    def rebased(self, model: str | None) -> bool:
        """Whether ``model``'s estimate starts from a prior moved to
        successes its own prior calls impossible (a service far faster
        than documented, a test server): they outnumber its tasks seen
        still running past that age; or, for a model none of whose tasks
        has finished yet, every model's do. A change of it makes the
        schedule's tables due for a rebuild."""
        return self._rebase_source(model).rebased

    def rebased_scale(self, model: str | None) -> float | None:
        """While :meth:`rebased`, the rebased median over ``model``'s own
        prior's (0.007 for renders of 1 s against veo3_fast's 150 s): how
        much faster than documented the service runs; else None."""
        own = self._own_prior(model)
        rebased = self._rebase_source(model).rebased_prior(own)
        return None if rebased is None else rebased.median / own.median

    def _own_prior(self, model: str | None) -> DurationPrior:
        """``model``'s documented prior, or the pooled one."""
        return (self._priors.get(model) if model is not None else None) or PooledPrior

    def _rebase_source(self, model: str | None) -> _Histogram:
        """Whose quick successes speak for ``model`` (see :meth:`rebased`):
        its own once one of its tasks finished, else every model's."""
        hist = self._seen(model)
        return hist if hist is not None and hist.count > 0 else self._pooled

    def _moved_like_the_others(
        self, model: str | None, prior: DurationPrior, hist: _Histogram | None
    ) -> DurationPrior:
        """``prior`` (``model``'s own) moved as the other models with priors
        moved from theirs (see _SHARED_SPEED_OTHERS)."""
        moved = finishes = 0.0
        for other, other_hist in self._models.items():
            other_prior = self._priors.get(other)
            if other == model or other_prior is None or other_hist.count == 0:
                continue
            moved += other_hist.count * self._move_of(other, other_hist, other_prior)
            finishes += other_hist.count
        if finishes <= 0:
            return prior
        own = hist.count if hist is not None else 0
        # (moved / finishes: the mean move; then shrunk by the two weights.)
        shift = moved / (finishes + _SHARED_SPEED_OTHERS)
        shift *= _SHARED_SPEED_OWN / (_SHARED_SPEED_OWN + own)
        return _bounded_prior(prior.median * math.exp(shift), prior.sigma)

    def _move_of(self, model: str, hist: _Histogram, prior: DurationPrior) -> float:
        """How far (log-seconds) ``model``'s fitted median is from its prior's:
        fitted once per state of its histogram (a table per model is made
        each rebuild, and each would fit every other model again)."""
        state = (hist.count, hist.exposures, hist.weight)
        kept = self._moves.get(model)
        if kept is not None and kept[0] == state:
            return kept[1]
        base = hist.rebased_prior(prior) or prior
        move = math.log(hist.fit(base, self._prior_weight).median / prior.median)
        self._moves[model] = (state, move)
        return move

    def _prior_masses(
        self, prior: DurationPrior, finished: int, early_scale: float = 1.0
    ) -> list[float]:
        """``prior`` widened by the doubt left after ``finished`` finishes,
        with the share of fast failures (over ``_EARLY_SPAN`` times
        ``early_scale``)."""
        return _with_fast_failures(
            _lognormal_masses(_with_doubt(prior, finished)),
            self.fast_failure_share(),
            early_scale,
        )


class _SpendLedger:
    """Requests spent on finished tasks followed from creation, beside what
    fixed polling would have spent, by stratum of generation time."""

    __slots__ = ("count", "fixed", "spent", "tasks")

    def __init__(self) -> None:
        strata = -(-_LOG_BINS // _LEDGER_STRATUM)
        self.count = array("d", bytes(8 * strata))
        self.spent = array("d", bytes(8 * strata))
        self.fixed = array("d", bytes(8 * strata))
        self.tasks = 0  # entries ever

    def add(self, bin_: int, polls: int, fixed_polls: int, memory: float) -> None:
        """A finished task of log bin ``bin_``: its requests and fixed polling's."""
        stratum = bin_ // _LEDGER_STRATUM
        self.count[stratum] += 1.0
        self.spent[stratum] += polls
        self.fixed[stratum] += fixed_polls
        self.tasks += 1
        if self.tasks % int(memory) == 0:
            # As the histograms' do: a drifting service's current spend weighs most.
            self.halve()

    def halve(self) -> None:
        """Old entries count half (each stratum's mean is unchanged)."""
        for values in (self.count, self.spent, self.fixed):
            for k in range(len(values)):
                values[k] *= 0.5


class _MixWatch:
    """Counts of tasks per model over one clock (a tick per task): the recent
    mix (each task counting half once 100 more were counted) and the latest
    one (25), and how far apart they are (see "The spend ledger" in the
    module docstring)."""

    __slots__ = ("clock", "latest", "recent")

    def __init__(self) -> None:
        self.clock = 0
        self.recent = _FadingCounts(_MIX_HALF_LIFE)
        self.latest = _FadingCounts(_TURN_HALF_LIFE)

    def count(self, model: str | None) -> None:
        """One more task of ``model`` (None: a model without a histogram of its own)."""
        self.clock += 1  # first: what was counted before fades by one task
        for key in (None,) if model is None else (None, model):
            self.recent.add(key, self.clock)
            self.latest.add(key, self.clock)

    def shift(self, models: Iterable[str]) -> float:
        """Half the summed absolute difference of the shares of ``models``
        (and of the rest, as one) in the two mixes; 0 before any task."""
        clock = self.clock
        recent_all = self.recent.get(None, clock)
        latest_all = self.latest.get(None, clock)
        if recent_all <= 0.0 or latest_all <= 0.0:
            return 0.0
        recent_rest, latest_rest, shift = recent_all, latest_all, 0.0
        for model in models:
            recent, latest = self.recent.get(model, clock), self.latest.get(model, clock)
            recent_rest -= recent
            latest_rest -= latest
            shift += abs(recent / recent_all - latest / latest_all)
        shift += abs(max(0.0, recent_rest) / recent_all - max(0.0, latest_rest) / latest_all)
        return 0.5 * shift


class _FadingCounts:
    """Per key, a count in which each unit counts half once ``half_life``
    more ticks of a clock have passed (one entry per key, whatever the count)."""

    __slots__ = ("_counts", "_half_life")

    def __init__(self, half_life: float) -> None:
        self._half_life = half_life
        self._counts: dict[str | None, tuple[float, int]] = {}  # key: (count, at clock)

    def get(self, key: str | None, clock: int) -> float:
        """The count of ``key`` at ``clock``."""
        count, at = self._counts.get(key, (0.0, 0))
        if not count:
            return 0.0
        return count * math.pow(0.5, (clock - at) / self._half_life)

    def add(self, key: str | None, clock: int) -> None:
        """One more for ``key`` at ``clock``."""
        self._counts[key] = (self.get(key, clock) + 1.0, clock)

    def take(self, other: _FadingCounts, clock: int) -> None:
        """Start again from ``other``'s counts at ``clock`` (fading at this half-life)."""
        self._counts = {key: (other.get(key, clock), clock) for key in other._counts}


def _log_quantiles(masses: list[float], levels: tuple[float, ...]) -> list[float]:
    """The log-seconds at which the cumulative ``masses`` (one per log bin)
    reach each of ``levels`` (increasing), interpolated within a bin."""
    out: list[float] = []
    total = 0.0
    k = 0
    for level in levels:
        while k < len(masses) and total + masses[k] < level:
            total += masses[k]
            k += 1
        if k == len(masses):
            out.append(len(masses) * _LOG_BIN)
            continue
        within = (level - total) / masses[k] if masses[k] > 0 else 0.0
        out.append((k + within) * _LOG_BIN)
    return out


def _with_doubt(prior: DurationPrior, finished: int) -> DurationPrior:
    """``prior`` widened by the doubt about its median, which ``finished``
    tasks have narrowed: the predictive distribution of a log-normal whose
    median is itself uncertain (log-sd ``_MEDIAN_DOUBT``, its variance halved
    after ``_DOUBT_FADES`` finishes).

    A service whose renders run at 0.7x or 1.5x the documented times is then
    still polled where they finish while the first of them are awaited,
    instead of leaving a gap of minutes there; once finishes have pinned the
    median, the documented spread rules.
    """
    doubt = _MEDIAN_DOUBT**2 * _DOUBT_FADES / (_DOUBT_FADES + finished)
    return _bounded_prior(prior.median, math.sqrt(prior.sigma**2 + doubt))


def _impossible_under(prior: DurationPrior) -> float:
    """The age under which ``prior`` (widened by the doubt about its median
    before any finish) calls a success impossible (see ``_IMPOSSIBLE_Z``)."""
    spread = math.sqrt(prior.sigma**2 + _MEDIAN_DOUBT**2)
    return prior.median * math.exp(-_IMPOSSIBLE_Z * spread)


def _bounded_prior(median: float, sigma: float) -> DurationPrior:
    """A prior the schedule makes of another (moved, fitted, widened), kept
    within what :class:`DurationPrior` takes: one built in a table's rebuild
    (a loop callback) must not be refused there (a user's prior of 5e8 s
    moved 20-fold as the other models moved raised ValueError)."""
    return DurationPrior(min(_MAX_PRIOR_MEDIAN, median), min(_MAX_PRIOR_SIGMA, sigma))


def _with_fast_failures(masses: list[float], share: float, scale: float = 1.0) -> list[float]:
    """``masses`` with ``share`` of the probability moved to fast failures,
    uniform in seconds over ``_EARLY_SPAN`` times ``scale``; what of that
    span lies under bin 0's centre (a second) goes to bin 0, which holds
    every duration under a second."""
    lo, hi = _EARLY_SPAN[0] * scale, _EARLY_SPAN[1] * scale
    density = share / (hi - lo)
    out = []
    for k, mass in enumerate(masses):
        t = math.exp((k + 0.5) * _LOG_BIN)
        early = density * _LOG_BIN * t if lo <= t <= hi else 0.0
        if k == 0:
            early += density * max(0.0, min(hi, t) - lo)
        out.append(mass * (1.0 - share) + early)
    return out


def _lognormal_masses(prior: DurationPrior) -> list[float]:
    mu, s = math.log(prior.median), prior.sigma
    scale = s * math.sqrt(2)
    edges = [0.5 * (1 + math.erf((k * _LOG_BIN - mu) / scale)) for k in range(_LOG_BINS + 1)]
    edges[0], edges[-1] = 0.0, 1.0
    return [edges[k + 1] - edges[k] for k in range(_LOG_BINS)]


def _smooth(bins: array[float], weight: float) -> list[float]:
    # Silverman-like bandwidth in log-seconds: wide on few data, ~5 % on many.
    width = max(0.04, 0.25 * weight**-0.2)
    taps = int(3 * width / _LOG_BIN) + 1
    kernel = [math.exp(-0.5 * (k * _LOG_BIN / width) ** 2) for k in range(-taps, taps + 1)]
    out = [0.0] * _LOG_BINS
    for i, mass in enumerate(bins):
        if mass <= 0:
            continue
        lo, hi = max(0, i - taps), min(_LOG_BINS, i + taps + 1)
        norm = sum(kernel[j - i + taps] for j in range(lo, hi))
        scale = mass / (norm * weight)
        for j in range(lo, hi):
            out[j] += kernel[j - i + taps] * scale
    return out


def optimal_polls(
    done: list[float],
    done_time: list[float],
    step: float,
    lam: float,
    *,
    min_steps: int = 1,
    reach: list[int] | None = None,
    shortest: list[int] | None = None,
    late_steps: int = 0,
    late_weight: float = 0.0,
) -> list[int]:
    """The optimal checking schedule on a grid: ``next[i]`` = grid index of the poll after ``i``.

    Solves ``W(i) = lam * P(T > t_i) + min_j [E[(t_j - T); t_i < T <= t_j] + W(j)]``
    backwards over grid times ``t_i = i * step``: the expected lag plus ``lam``
    times the expected requests of a task known to be running at ``t_i``.
    The lag term is Monge, so the best ``j`` never decreases with ``i`` and
    each row searches only up to the next row's choice.

    :param done: ``done[i] = P(T <= t_i)``, non-decreasing, ending at 1.
    :param done_time: ``done_time[i] = E[T; T <= t_i]``.
    :param step: grid step in seconds.
    :param lam: price of one request, in seconds of mean lag.
    :param min_steps: shortest gap, in grid steps.
    :param reach: ``reach[i]``, if given: the furthest next poll from ``i``
        (must be non-decreasing in ``i``).
    :param shortest: ``shortest[i]``, if given: the nearest next poll from
        ``i`` (non-decreasing in ``i``; ``min_steps`` holds as well).
    :param late_steps: with ``late_weight``: each second of lag beyond
        ``late_steps`` grid steps costs ``1 + late_weight`` seconds (keeps the
        p95 lag down where completions are sparse but not absent). Any
        non-decreasing cost of lag keeps the problem Monge.
    """
    return _to_the_end(
        optimal_polls_in_steps(
            done,
            done_time,
            step,
            lam,
            min_steps=min_steps,
            reach=reach,
            shortest=shortest,
            late_steps=late_steps,
            late_weight=late_weight,
        )
    )


def _to_the_end(steps: Generator[None, None, _R]) -> _R:
    """What a stepped computation returns, run at once."""
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            result: _R = finished.value
            return result


def optimal_polls_in_steps(
    done: list[float],
    done_time: list[float],
    step: float,
    lam: float,
    *,
    min_steps: int = 1,
    reach: list[int] | None = None,
    shortest: list[int] | None = None,
    late_steps: int = 0,
    late_weight: float = 0.0,
) -> Generator[None, None, list[int]]:
    """:func:`optimal_polls`, pausing (a ``yield``) after every
    :data:`STEP_WORK` candidate polls weighed, about a millisecond or two of
    work: a rebuild on an event loop runs a step per loop iteration.
    Returns the same list."""
    n = len(done) - 1
    cost = [0.0] * (n + 1)
    best = [n] * (n + 1)
    work = 0
    for i in range(n - 1, -1, -1):
        if work >= STEP_WORK:
            work = 0
            yield
        c_i, m_i = done[i], done_time[i]
        lo = i + min_steps if shortest is None else max(i + min_steps, shortest[i])
        lo = min(lo, n)
        hi = best[i + 1] if i + 1 < n else n
        if reach is not None:
            hi = min(hi, reach[i])
        hi = max(hi, lo)
        work += hi - lo + 1
        best_value, best_j = math.inf, hi
        for j in range(lo, hi + 1):
            value = j * step * (done[j] - c_i) - (done_time[j] - m_i) + cost[j]
            k = j - late_steps
            if late_weight and k > i:
                value += late_weight * (k * step * (done[k] - c_i) - (done_time[k] - m_i))
            if value < best_value:
                best_value, best_j = value, j
        cost[i] = best_value + lam * (1.0 - c_i)
        best[i] = best_j
    return best


@attrs.frozen
class _Basis:
    """What a table was built on, read off the learner when it was made: a
    rebuild is due once that has grown, and the drift check reads it."""

    stamp: int  # the learner's evidence of the model
    finished: int  # its finishes
    seen_to: float  # the oldest age seen (see DurationLearner.longest)
    rebased: bool  # see DurationLearner.rebased
    instant: bool  # failing at once: see DurationLearner.failure_scale


@attrs.frozen
class _Table:
    """One model's solved schedule: the next poll's grid index from each grid index."""

    next_index: list[int]
    costly_index: list[int]  # the solution just over the budget
    costly_share: float  # how often it is followed instead, to spend the budget
    done: list[float]  # P(T <= t_i)
    fresh: list[float]  # ages of the polls of a task followed from creation
    lam: float
    basis: _Basis


class AdaptiveSchedule:
    """The next delay of a task, from what a :class:`DurationLearner` has learned.

    Deterministic given the learner's observations and the ``rng`` passed in.
    Tables are cached per model and rebuilt as data accumulate.
    """

    def __repr__(self) -> str:
        return f"AdaptiveSchedule(policy={self.policy!r}, learner={self.learner!r})"

    def __init__(self, policy: AdaptivePolicy, learner: DurationLearner) -> None:
        self.policy = policy
        self.learner = learner
        self._tables: dict[str | None, _Table] = {}
        self._job: Iterator[None] | None = None
        # Models found due for a rebuild while one was under way (which may
        # have read them before what made them due): looked at again when
        # it ends, not left until their next poll is planned.
        self._due_meanwhile: set[str | None] = set()
        # Per model: the learner's finishes at its last drift check; the
        # models whose evidence was halved since the rebuild that is due.
        self._drift_checked: dict[str | None, int] = {}
        self._stale: set[str | None] = set()
        # Per model: how many times its table moved, and its median then.
        self._revisions: dict[str | None, int] = {}
        self._moved_at: dict[str | None, float] = {}
        self._explorers_left = policy.explorers
        #: Set by a caller on an event loop: called when a rebuild is due,
        #: which then runs in steps (:meth:`step`) instead of within the
        #: :meth:`next_delay` that found it due (it takes 20-150 ms). None
        #: (offline, the default): rebuilt at once, as a pure function of the calls.
        self.on_rebuild_due: Callable[[], None] | None = None

    def next_delay(
        self,
        *,
        model: str | None,
        age: float | None,
        polls: int,
        rng: random.Random,
        asked_at: float | None = None,
        explorer: bool = False,
        since_poll: float | None = None,
    ) -> float:
        """Seconds from now to the next poll of an unfinished task.

        :param model: the task's model (``params["model"]``), None if unknown.
        :param age: seconds since the task's creation, None if unknown.
        :param polls: polls already made for this task (0 before the first).
        :param rng: the jitter's random source.
        :param asked_at: the task's age when the poll just answered was sent
            (default ``age``): the next poll is planned from that poll's
            time, so a slow answer does not lengthen the gap between polls
            (past the bulk, never over ``max_gap`` from one to the next).
            At most ``age``; ignored when ``age`` is None.
        :param explorer: the task was granted :meth:`explores`: also polled
            at ages ``min_gap``, twice that, ... up to 30 s.
        :param since_poll: seconds since the poll just made was sent, where
            this plan is not made at its answer (a new wait of a task an
            earlier wait polled): ``min_gap`` counts from that poll, not from
            now (else waits shorter than ``min_gap``, begun one after the
            other, put the poll off for ever).
        :raises ValueError: for a negative or non-finite age or ``asked_at``,
            ``asked_at`` past ``age``, negative polls.
        :raises TypeError: for arguments of the wrong type.
        """
        _check_count("polls", polls)
        if model is not None and not isinstance(model, str):
            raise TypeError(f"model must be a str or None, not {model!r}")
        _check_rng(rng)
        table = self.table(self.table_key(model))
        policy = self.policy
        given_age = age is not None
        if age is None:
            fresh = table.fresh
            age = fresh[polls - 1] if 0 < polls <= len(fresh) else 0.0
            if polls > len(fresh):
                age = fresh[-1] + (polls - len(fresh)) * policy.max_gap if fresh else 0.0
        else:
            age = _check_number("age", age, 0)
        asked = age
        if asked_at is not None and given_age:
            asked = _check_number("asked_at", asked_at, 0)
            if asked > age:
                raise ValueError(f"asked_at ({asked}) must not be past age ({age})")
        if polls == 0:
            # No poll made yet: nothing was learned of this task since its
            # creation, whenever a wait began (a poll planned at the wait's
            # start, then planned again, was never made either).
            asked = age
        n = len(table.next_index) - 1
        # The nearest grid time is the poll just made (the jitter below stays
        # under half a step, so rounding finds it again), and the next poll
        # aims at its planned grid time: jitter never piles up into extra polls.
        i = min(round(asked / GRID), n)
        if polls == 0 and table.done[i] >= _DONE_ALREADY:
            return 0.0  # handed in old: it may be done already
        if i >= n:
            delay = policy.max_gap - (age - asked)
        else:
            share = table.costly_share
            plan = table.costly_index if share and rng.random() < share else table.next_index
            if polls == 0:
                # Never polled: the fresh schedule's first poll at or after
                # this age, as if followed from creation. (Planned as after a
                # poll at this age, a wait begun at 20 s skipped the 40 s
                # probe and ran on a grid 16 s later than the task's.)
                delay = _first_poll_from(plan, i) * GRID - age
            else:
                # Never longer than the gap planned from the grid point: caps hold.
                delay = min(plan[i] * GRID - age, (plan[i] - i) * GRID)
        if explorer and given_age:
            delay = min(delay, _explorer_delay(policy.min_gap, asked if polls else None, age))
        if since_poll is not None:
            floor = policy.min_gap - _check_number("since_poll", since_poll, 0)
        else:
            floor = policy.min_gap if polls else 0.0
        return self._jittered(delay, rng, floor)

    def explorer_delay(
        self, *, age: float, asked_at: float, polls: int, rng: random.Random
    ) -> float | None:
        """Seconds from now to an explorer's next poll (see :meth:`explores`),
        which needs no table: for a task polled while its model's first
        table is still being made (a second or two of CPU), so that its
        polls at 2, 4, 8 s of age are not lost meanwhile. None when no
        explorer poll is left (from 30 s of age).

        :param age: the task's age now; ``asked_at``: its age at the poll
            just made (ignored when ``polls`` is 0).
        """
        _check_count("polls", polls)
        _check_rng(rng)
        asked = _check_number("asked_at", asked_at, 0) if polls else None
        delay = _explorer_delay(self.policy.min_gap, asked, _check_number("age", age, 0))
        if delay == math.inf:
            return None
        return self._jittered(delay, rng, 0.0 if asked is None else self.policy.min_gap)

    def _jittered(self, delay: float, rng: random.Random, floor: float) -> float:
        """``delay`` jittered, and at least ``floor`` (and 0): ``min_gap`` after
        an answer (a slow server is not asked again at once), ``min_gap`` less
        the time since the last poll where the plan is not made at its answer,
        0 before any poll (a first poll overdue goes now)."""
        policy = self.policy
        if policy.jitter:
            spread = min(policy.jitter * abs(delay), _MAX_JITTER) * rng.uniform(-1.0, 1.0)
            if delay <= policy.max_gap < delay + spread:
                spread = -spread  # a gap within max_gap stays within it: jittered shorter
            delay += spread
        return max(delay, floor, 0.0)

    def unseen_delay(self, polls: int, rng: random.Random) -> float:
        """Seconds from now to the next poll of a task no poll has seen yet:
        a bare id whose polls so far failed (a 5xx, a reset) or found no
        record. Its age is unknown, so no schedule of ages applies (a fresh
        task's would wait its first delay, 30-80 s, for a task that may well
        be done): back off from ``min_gap``, doubling, capped at ``max_gap``,
        jittered shorter only (a capped gap stays within ``max_gap``).

        :param polls: polls already made for this task (1 or more).
        :param rng: the jitter's random source.
        """
        _check_count("polls", polls)
        _check_rng(rng)
        policy = self.policy
        delay = min(policy.max_gap, policy.min_gap * 2.0 ** max(0, min(polls, 32) - 1))
        if policy.jitter:
            delay -= min(policy.jitter * delay, _MAX_JITTER) * rng.random()
        return max(delay, policy.min_gap)

    def explores(self, age: float | None) -> bool:
        """Whether a task first planned now, at ``age``, is one of the
        policy's ``explorers``: granted to the first tasks young enough for an
        explorer poll still to come (before 30 s) planned while no task of any
        model has finished (each call that
        answers True uses one up).

        The schedule's first poll of a fresh task (30-80 s, where the priors
        put fast failures and the bulk) is right for the service as
        documented; a service much faster than that, or a test server,
        would have every task of a session's first minute found a minute
        late, and the learner, which learns only from finishes, would see
        none before then. An explorer's polls at 2, 4, 8, 16 s of age (one
        task: 4 requests more, once a session) find such tasks, and the
        tables learn from them.
        """
        if age is not None:
            age = _check_number("age", age, 0)
        if (
            self._explorers_left <= 0
            or age is None
            # Too old for an explorer poll still to come (not one used up for none).
            or _explorer_delay(self.policy.min_gap, age, age) == math.inf
            or self.learner.count(None) > 0
        ):
            return False
        self._explorers_left -= 1
        return True

    def table_key(self, model: str | None) -> str | None:
        """The table ``model`` is polled by: its own, or past ``_MAX_TABLES``
        names with tables (a model with a prior always has its own) the
        pooled one (None). Each table is solved again at every rebuild, and
        names come from the service's records: a hundred odd names cost a
        hundred rebuilds of up to a hundred tables."""
        priors = self.policy.priors
        if model is None or model in self._tables or model in priors:
            return model
        own = sum(1 for key in self._tables if key is not None and key not in priors)
        return model if own < _MAX_TABLES else None

    def has_table(self, model: str | None) -> bool:
        """Whether ``model`` has its table (see :meth:`table_key`)."""
        return self.table_key(model) in self._tables

    def ready(self, model: str | None) -> bool:
        """Whether :meth:`next_delay` answers for ``model`` without making
        its first table.

        On a loop (``on_rebuild_due`` set), a model's first table (10-150 ms
        of dynamic programs, and the session's first table has no price to
        start from) is made in steps like a rebuild, as offline it is made at
        once: this starts that rebuild if none runs, and is False until the
        model has its table (a rebuild under way may be one that started
        before the model was seen: ask again when it ends). Offline it is
        always True.
        """
        model = self.table_key(model)
        if model in self._tables or self.on_rebuild_due is None:
            return True
        if self._job is None:
            self._job = self._rebuilding(model)
            self.on_rebuild_due()
        return model in self._tables  # made at once where no loop steps it

    def rebuild_if_due(self, model: str | None) -> None:
        """Start the rebuild ``model``'s table is due for, if any (on a loop,
        in steps: see ``on_rebuild_due``): called when a task finishes, so
        that what it taught moves the table even while no poll is planned
        (every task of a batch waiting out a long gap the old table chose).
        A model without a table yet is left to its first poll."""
        key = self.table_key(model)
        if key in self._tables:
            self.table(key)

    def table(self, model: str | None) -> _Table:
        """The model's solved schedule, rebuilt if the learner has moved on.

        A rebuild solves every model's table again, at one shared price of a
        request (see :meth:`_rebuild`).
        """
        table = self._tables.get(model)
        if table is not None:
            count = self.learner.evidence(model)
            grown = count - table.basis.stamp
            if (
                grown < self.policy.rebuild_every
                and count < 1.5 * table.basis.stamp + 8
                and model not in self._stale
                # (a first success found in seconds moves the table at once,
                # not some ten finishes later: see DurationLearner.rebased)
                and self.learner.rebased(model) == table.basis.rebased
                # (and so do tasks found failed at once: see failure_scale)
                and (self.learner.failure_scale() is not None) == table.basis.instant
                and not self._drifted(model, table)
            ):
                return table
            if self.on_rebuild_due is not None:
                # In steps, on the caller's loop: meanwhile the table in hand serves.
                if self._job is None:
                    self._job = self._rebuilding(model)
                    self.on_rebuild_due()
                else:
                    self._due_meanwhile.add(model)
                return table
        elif self.on_rebuild_due is not None and self._tables:
            # A model seen for the first time by a caller that did not wait
            # for ready(): its own table at the shared price now (one solve),
            # every table again in steps.
            self._install(model, self._table_at_price(model))
            self._job = self._rebuilding(model)
            self.on_rebuild_due()
            return self._tables[model]
        self._job = None  # rebuilt here and now, every table
        for _ in self._rebuilding(model):
            pass
        return self._tables[model]

    def _drifted(self, model: str | None, table: _Table) -> bool:
        """Whether what tasks of ``model`` did lately no longer follows its
        table (then its old evidence was just halved, and the table is due).

        Over the latest 500 intervals its tasks were watched through (from a
        poll that found one running to the next poll of it), the finishes
        seen are compared with those the table's hazard expects over the same
        intervals (a one-sample log-rank test: where the estimate is right,
        they differ by about the square root of those expected). A service
        whose renders grow or shrink through the session moves them apart
        long before ``memory`` lets old evidence fade. Unlike a test of the
        latest finishes alone, it is not fooled by the order they come in: a
        batch created at once finishes short renders first, long ones last,
        and both are expected where they happen.

        Checked every 25 finishes once the table was built on 200, so it
        costs nothing per call; not for the pooled table (model None), whose
        intervals mix the models of the moment. While a drift lasts, each
        halving rebuilds the tables (10-25 ms a model, in steps on a loop).
        """
        learner = self.learner
        finished = learner.count(model)
        checked = self._drift_checked.get(model, 0)
        if (
            model is None
            or table.basis.finished < _DRIFT_AFTER
            or finished - checked < _DRIFT_EVERY
        ):
            return False
        self._drift_checked[model] = finished
        latest = learner.latest_intervals(model)
        if len(latest) < _DRIFT_WINDOW:
            return False
        done = table.done
        n = len(done) - 1

        def hazard_to(age: float) -> float:
            # The cumulative hazard -ln(1 - F(age)), F read off the grid.
            at = age / GRID
            i = min(n, int(at))
            left = done[i] if i == n else done[i] + (at - i) * (done[i + 1] - done[i])
            return -math.log(max(1e-9, 1.0 - left))

        # Up to the table's 90th percentile only, and short of the oldest age
        # its data reached by some four widths of the estimate's smoothing: past
        # them the estimate rests on few finishes or on the prior alone (a
        # table made mid-burst, on its short renders, spikes where the burst
        # had got to), its smoothing spreads the last finishes out (renders
        # all alike read as finishing twice as often as expected), and a
        # burst's last, long renders would be all the window holds.
        bulk = GRID * next((i for i, c in enumerate(done) if c >= _DRIFT_BULK), n)
        bulk = min(bulk, table.basis.seen_to * _DRIFT_SHORT_OF)
        if bulk < _DRIFT_MIN_BULK:
            return False  # renders of seconds: a grid step or two, nothing to test
        seen = expected = 0.0
        for start, end, ended in latest:
            if start >= bulk:
                continue
            seen += ended and end <= bulk
            expected += hazard_to(min(end, bulk)) - hazard_to(start)
        if abs(seen - expected) <= _DRIFT_Z * math.sqrt(max(expected, 1.0)):
            return False
        learner.forget(model)
        self._stale.add(model)
        return True

    def step(self) -> bool:
        """Do one step of a rebuild that is due (at most :data:`STEP_WORK`
        candidate polls of one model's program, a millisecond or two); True
        while more steps remain."""
        job = self._job
        if job is None:
            return False
        if next(job, _DONE) is _DONE:
            self._job = None
            # A task that finished while this rebuild ran (the explorer's,
            # found done in seconds while the first tables were made) made
            # its model due again: the rebuild starts again now if the one
            # just ended did not take that in (its queued polls would wait
            # out the old table's first delay, 40 s, else).
            due, self._due_meanwhile = self._due_meanwhile, set()
            for model in due:
                if self._job is None and model in self._tables:
                    self.table(model)
            return self._job is not None
        return True

    def _table_at_price(self, model: str | None) -> _Table:
        """A table for ``model`` at the price of the tables in hand (no bracketing)."""
        lam = next(iter(self._tables.values())).lam
        curve = self._curve(model, self._budget_share())
        best = curve.solve(lam)[0]
        return _Table(
            next_index=best,
            costly_index=best,
            costly_share=0.0,
            done=curve.done,
            fresh=_fresh_polls(best, curve.n),
            lam=lam,
            basis=self._basis(model),
        )

    def _basis(self, model: str | None) -> _Basis:
        """What a table of ``model`` made now is built on."""
        learner = self.learner
        return _Basis(
            learner.evidence(model),
            learner.count(model),
            learner.longest(model),
            learner.rebased(model),
            learner.failure_scale() is not None,
        )

    def _rebuilding(self, model: str | None) -> Iterator[None]:
        """Solve every known model's table again, at one price of a request,
        yielding after each solve (see :meth:`step`); the tables are replaced
        at the end, together.

        The budget is the session's, not each model's: the price is the one at
        which the models' expected requests, weighted by how many tasks of each
        were seen lately (:meth:`DurationLearner.recent_tasks`), add up to the
        weighted budgets. A request of a short model
        buys more lag than one of a long model, so a shared price spends more
        on the short one (an early probe for its fast failures, closer polls
        round its median) and less on the long one, as the limit does.
        """
        policy = self.policy
        keys = list(self._tables)
        if model not in self._tables:
            keys.append(model)
        # Every table has the shared price: any is a good first guess.
        lam_hint = next(iter(self._tables.values())).lam if self._tables else None
        share = self._budget_share()
        # What the tables are built on: a rebuild is due again once this grows.
        bases = [self._basis(key) for key in keys]
        # Made from the halved evidence: due again only when it has grown.
        # (A halving while this runs leaves its model stale for the next.)
        self._stale.difference_update(keys)
        curves = []
        for key in keys:  # a few milliseconds each: one per step
            curves.append(self._curve(key, share))
            yield
        # The price is set by the models most tasks use (a bisection solves each
        # a dozen times); any rare others are solved at that price only, so
        # that a rebuild stays short however many names a session sees.
        pricing = _pricing(curves)
        total = sum(curve.weight for curve in pricing)
        budget = sum(curve.weight * curve.budget for curve in pricing) / total

        def spend(lam: float) -> float:
            return sum(curve.weight * curve.solve(lam)[1] for curve in pricing) / total

        def solving(lam: float, among: list[_Curve]) -> Iterator[None]:
            # Each program not solved yet at this price, in steps.
            for curve in among:
                yield from curve.solving(lam)

        # Where completions are sparse (early failures, long tails) the mean-lag
        # optimum leaves long gaps: if the session's 95th percentile of lag
        # (every model's tasks together, as the goal counts it) would pass
        # _P95_SHARE of fixed polling's, late lag is priced higher for the
        # models whose own lags pass it too often, until it does not.
        p95_limit = _P95_SHARE * 0.95 * policy.budget_interval
        everyone = sum(curve.weight for curve in curves)
        raises = 0
        while True:
            search = _price_bracket(spend, budget, lam_hint)
            lam = next(search)
            while True:  # each price the search tries, solved in steps first
                yield from solving(lam, pricing)
                try:
                    lam = next(search)
                except StopIteration as found:
                    lo, hi = found.value
                    break
            yield from solving(hi, curves)
            late = [_late_share(curve.solve(hi)[0], curve.done, p95_limit) for curve in curves]
            over = []
            if sum(c.weight * share for c, share in zip(curves, late, strict=True)) > (
                0.05 * everyone
            ):
                over = [c for c, share in zip(curves, late, strict=True) if share > 0.05]
            # At most three raises, each followed by a new bracket: the tables
            # are made at a price found for the weights they are solved with.
            if not over or raises == 3:
                break
            raises += 1
            for curve in over:
                curve.raise_late_weight()
        yield from solving(lo, curves)
        spend_hi, spend_lo = spend(hi), spend(lo)
        # Spends come in steps (a poll more or less), so the cheaper solution
        # may leave much of the budget unspent: mixing in the costlier one at
        # random, decision by decision, spends it (as the limit's mixture does).
        share = 0.0
        if spend_lo > spend_hi:
            share = min(1.0, max(0.0, (budget - spend_hi) / (spend_lo - spend_hi)))
        for key, curve, basis in zip(keys, curves, bases, strict=True):
            best, costly = curve.solve(hi)[0], curve.solve(lo)[0]
            self._install(
                key,
                _Table(
                    next_index=best,
                    costly_index=costly,
                    costly_share=share if costly != best else 0.0,
                    done=curve.done,
                    fresh=_fresh_polls(best, curve.n),
                    lam=hi,
                    basis=basis,
                ),
            )

    def _install(self, key: str | None, table: _Table) -> None:
        """Make ``table`` the one of ``key``, counting a move of its median
        of ``_REPLAN_SHIFT`` or more since the last, or a change of whether
        tasks fail at once (see :meth:`revisions`)."""
        previous = self._tables.get(key)
        self._tables[key] = table
        median = _median_age(table.done)
        moved_at = self._moved_at.get(key)
        if moved_at is None:
            self._moved_at[key] = median
            self._revisions[key] = 0
        elif abs(math.log(median / moved_at)) >= _REPLAN_SHIFT or (
            previous is not None and previous.basis.instant != table.basis.instant
        ):
            self._moved_at[key] = median
            self._revisions[key] += 1

    def revisions(self) -> dict[str | None, int]:
        """How many times each table (by :meth:`table_key`) has *moved*: its
        median, at a rebuild, 20 % or more from where it was at its last move
        (or at its first table), or whether tasks fail at once changed (see
        :meth:`DurationLearner.failure_scale`). Polls of that model planned
        before a move were planned on a distribution since found wrong (a
        service faster than documented, a test server failing every task):
        a caller holding such polls plans them again, with
        :meth:`next_delay` at the task's age now and ``asked_at`` its last
        poll's, and brings each forward where that is sooner. A copy.
        """
        return dict(self._revisions)

    def moves_since(self, seen: dict[str | None, int]) -> list[str | None]:
        """The tables that moved since ``seen``, the :meth:`revisions` a
        caller last acted on (updated in place; a table it sees for the
        first time has not moved for it), in the order the tables were
        made: those whose waiting polls it plans again."""
        moved = []
        for key, count in self._revisions.items():
            if seen.setdefault(key, count) != count:
                seen[key] = count
                moved.append(key)
        return moved

    def _budget_share(self) -> float:
        """The share of the estimated budget to aim at: ``_BUDGET_SHARE`` until
        the spend ledger speaks, then one moved by what the ledger reads over
        or under ``_SPEND_AIM`` of fixed polling's (proportionally, up to
        fixed polling's spend: see the module docstring for the offset that
        leaves; past it, as the reading's fourth power).

        What was spent over the aim is taken back from the tasks to come, as
        many again as have finished (and what was saved is spent): the
        estimate's errors while learning, the jitter and the mixture all show
        in the ledger, whatever their cause.
        """
        ratio = self.learner.extra_spend_ratio()
        if ratio is None:
            return _BUDGET_SHARE
        if ratio <= 1.0:
            share = 2.0 * _SPEND_AIM - ratio
            if share > 1.0:
                # Savings are spent at half the pace: the ledger reads a
                # task's spend when it finishes, minutes after its plan was
                # set (half a file of 300 tasks later), and spending them at
                # once overshot (300 renders, 5 % failing: 1.005x fixed
                # polling's requests, its last third 1.12x).
                share = 1.0 + _SAVINGS_GAIN * (share - 1.0)
        else:
            # Over fixed polling: a proportional step alone left a service
            # slowing down through the hours 4-6 % over it (each task longer
            # than the estimate, made of the past, expects); a steeper one
            # brings it to about fixed polling's spend.
            share = (2.0 * _SPEND_AIM - 1.0) * ratio**-_OVERSPEND_POWER
        low, high = _SHARE_RANGE
        return min(high, max(low, share))

    def _curve(self, model: str | None, share: float) -> _Curve:
        """The program's inputs for one model: its learned distribution and
        budget (the first request of each task, and ``share`` of the requests
        fixed polling makes beyond it on that distribution)."""
        policy = self.policy
        learner = self.learner
        interval = policy.budget_interval
        scale = learner.rebased_scale(model)
        if scale is not None and scale <= _TEST_SERVER_SCALE:
            # A test server (see _TEST_SERVER_SCALE): held to fixed 30 s
            # polling's one request a task, the program polled once, past
            # the doubt-widened tail (1 s renders seen at 8-33 s); it gets
            # fixed polling's budget at the service's own pace instead.
            interval = max(policy.min_gap, interval * scale)
        done, done_time, fixed = _grid_distribution(learner.masses(model), interval)
        extra = max(0.0, fixed - 1.0) * share
        # While the prior still rules (few finishes seen), aim lower: a prior
        # that is wrong spends more than it plans.
        finished = learner.count(model)
        tasks = learner.recent_tasks(model)
        if model is None:
            # The pooled count holds every model's tasks: those of the models
            # with tables of their own are theirs.
            tasks -= sum(learner.recent_tasks(key) for key in self._tables if key is not None)
        if model not in policy.priors and learner.evidence(model) == 0:
            finished = learner.count(None)  # an unseen name follows the pooled estimate
        extra *= 1.0 - _PRIOR_MARGIN * policy.prior_weight / (policy.prior_weight + finished + 1)
        n = len(done) - 1
        # Gaps are capped past the learned bulk, and past twice the
        # documented median whatever was learned: many tasks seen running when
        # old (ids handed in late) move the learned median out, and a task
        # that old must still be seen within max_gap.
        documented = (policy.priors.get(model) if model is not None else None) or PooledPrior
        bulk = next(i for i, c in enumerate(done) if c >= _CAP_FROM_Q)
        cap_from = min(bulk, max(1, round(_CAP_FROM_PRIOR * documented.median / GRID)))
        gap = max(1, int(policy.max_gap / GRID))
        return _Curve(
            done=done,
            done_time=done_time,
            budget=1.0 + extra,
            # A model not seen yet still counts a little: its table is solved too.
            weight=max(0, tasks) + 1.0,
            reach=[min(n, max(i, cap_from) + gap) for i in range(n + 1)],
            shortest=_tail_gaps(n, bulk, min(gap, round(_TAIL_GAP * interval / GRID))),
            min_steps=max(1, math.ceil(policy.min_gap / GRID)),
            late_steps=round(policy.late_lag / GRID),
            late_weight=policy.late_weight,
        )


class _Curve:
    """One model's dynamic program: its inputs and its solutions by price."""

    __slots__ = (
        "budget",
        "done",
        "done_time",
        "late_steps",
        "late_weight",
        "min_steps",
        "n",
        "reach",
        "shortest",
        "solved",
        "weight",
    )

    def __init__(
        self,
        *,
        done: list[float],
        done_time: list[float],
        budget: float,
        weight: float,
        reach: list[int],
        min_steps: int,
        late_steps: int,
        late_weight: float,
        shortest: list[int] | None = None,
    ) -> None:
        self.done = done
        self.done_time = done_time
        self.budget = budget
        self.weight = weight
        self.reach = reach
        self.shortest = shortest
        self.min_steps = min_steps
        self.late_steps = late_steps
        self.late_weight = late_weight
        self.n = len(done) - 1
        # Bracketing and the final pick ask again for prices already solved.
        self.solved: dict[float, tuple[list[int], float]] = {}

    def solve(self, lam: float) -> tuple[list[int], float]:
        """The optimal next poll from each grid index at price ``lam``, and
        the expected requests of a task followed from creation."""
        found = self.solved.get(lam)
        if found is None:
            for _ in self.solving(lam):
                pass
            found = self.solved[lam]
        return found

    def solving(self, lam: float) -> Iterator[None]:
        """:meth:`solve` in steps (see :func:`optimal_polls_in_steps`)."""
        if lam in self.solved:
            return
        best = yield from optimal_polls_in_steps(
            self.done,
            self.done_time,
            GRID,
            lam,
            min_steps=self.min_steps,
            reach=self.reach,
            shortest=self.shortest,
            late_steps=self.late_steps,
            late_weight=self.late_weight,
        )
        self.solved[lam] = (best, _expected_requests(best, self.done))
        yield

    def raise_late_weight(self) -> None:
        """Price late lag higher (x2, or 1 from 0); earlier solutions are void.

        Doubling, not more: each step costs mean lag, and the guard stops at
        the first price whose p95 passes.
        """
        self.late_weight = 2 * self.late_weight if self.late_weight else 1.0
        self.solved.clear()


def _tail_gaps(n: int, bulk: int, longest: int) -> list[int]:
    """The nearest next poll from each grid index up to ``n`` (see
    :func:`optimal_polls`, whose ``min_steps`` holds as well): from the
    learned bulk's end (index ``bulk``) on, a gap of ``_TAIL_GAP_PER_AGE`` of
    the age, up to ``longest`` steps (see ``_TAIL_GAP``); before it, none."""
    return [i if i < bulk else i + min(longest, round(_TAIL_GAP_PER_AGE * i)) for i in range(n + 1)]


def _expected_requests(plan: Sequence[int], done: Sequence[float]) -> float:
    """The expected requests of a task followed from creation by ``plan``
    (the next poll's grid index from each index), where ``done[i]`` is the
    chance it has ended by grid index ``i``: each poll is made if the task
    had not ended by the one before."""
    i, requests, end = 0, 0.0, len(done) - 1
    while i < end:
        requests += 1.0 - done[i]
        i = plan[i]
    return requests


def _pricing(curves: Sequence[_Curve]) -> list[_Curve]:
    """The curves whose spend sets the shared price: the most used, at least
    ``_PRICING_MODELS`` of them and as many as cover ``_PRICING_SHARE`` of
    the weight."""
    everyone = sum(curve.weight for curve in curves)
    pricing: list[_Curve] = []
    total = 0.0
    for curve in sorted(curves, key=lambda curve: curve.weight, reverse=True):
        if len(pricing) >= _PRICING_MODELS and total >= _PRICING_SHARE * everyone:
            break
        pricing.append(curve)
        total += curve.weight
    return pricing


def _price_bracket(
    spend: Callable[[float], float], budget: float, lam_hint: float | None
) -> Generator[float, None, tuple[float, float]]:
    """Prices ``lo < hi`` either side of the one that spends ``budget``
    (bisection on log-price, to ~5 %: the mixture spends the rest).

    Yields each price before ``spend`` reads it, so that the caller may solve
    the programs at that price in steps; returns ``(lo, hi)``.
    """
    lo, hi = (lam_hint / 2, lam_hint * 2) if lam_hint else (0.05, 50.0)
    while True:
        yield lo
        if not (spend(lo) < budget and lo > 1e-4):
            break
        lo /= 4
    while True:
        yield hi
        if not (spend(hi) > budget and hi < 1e5):
            break
        hi *= 4
    for _ in range(5 if lam_hint else 10):
        mid = math.sqrt(lo * hi)
        yield mid
        if spend(mid) > budget:
            lo = mid
        else:
            hi = mid
    return lo, hi


def _explorer_delay(min_gap: float, asked: float | None, age: float) -> float:
    """The delay to an explorer's next poll: at the first of the ages
    ``min_gap``, twice that, ... past ``asked`` (the poll just made; None:
    none made yet), none (infinite) from ``_EXPLORE_UNTIL`` on. Negative
    when that poll is overdue."""
    if asked is None and age >= _EXPLORE_UNTIL:
        return math.inf  # first planned past the explorer's ages: none is due
    at = min_gap
    while asked is not None and at <= asked + 0.5 * min_gap:
        at *= 2.0  # (the poll just made, jittered, is not the next)
    return at - age if at < _EXPLORE_UNTIL else math.inf


def _median_age(done: Sequence[float]) -> float:
    """The age by which half the tasks are done, on the grid (one step at least)."""
    return max(1, bisect.bisect_left(done, 0.5)) * GRID


def _first_poll_from(plan: list[int], i: int) -> int:
    """The first grid point at or after ``i`` (past 0) that ``plan`` polls a
    task followed from creation at."""
    j = plan[0]
    while j < i:
        j = plan[j]
    return j


def _fresh_polls(best: list[int], n: int) -> list[float]:
    """The ages of the polls of a task followed from creation by ``best``."""
    fresh, i = [], 0
    while i < n:
        i = best[i]
        fresh.append(i * GRID)
    return fresh


def _late_share(best: list[int], done: list[float], limit: float) -> float:
    """The share of tasks followed from creation by the schedule ``best``
    whose detection lag passes ``limit`` seconds (its end counts as detected
    at once)."""
    n = len(done) - 1
    # A finish in grid cell k (i < k <= j) is seen at t_j, with a lag in
    # [(j - k) steps, (j - k + 1) steps), uniform within it (the finishes
    # are, within a cell): the part of that step past the limit counts.
    late = 0.0
    i = 0
    while i < n:
        j = best[i]
        for k in range(i + 1, j + 1):
            past = min(1.0, max(0.0, (j - k + 1) - limit / GRID))
            if past:
                late += past * (done[k] - done[k - 1])
        i = j
    return late


def _grid_distribution(
    masses: list[float], budget_interval: float
) -> tuple[list[float], list[float], float]:
    """Cumulative ``P(T <= t_i)``, ``E[T; T <= t_i]`` on the grid, and the request budget."""
    # Spread each log bin's mass evenly over the seconds it spans, cell by cell:
    # past a few minutes a bin is wider than a grid step, and putting its mass
    # at its centre would let the program believe one poll just after the
    # centre catches the whole bin (half of it finishes after that poll).
    cells: dict[int, list[float]] = {}
    total = 0.0
    for k, mass in enumerate(masses):
        if mass <= 1e-12:
            continue
        start, end = math.exp(k * _LOG_BIN), math.exp((k + 1) * _LOG_BIN)
        density = mass / (end - start)
        total += mass
        lo = start
        while lo < end:
            index = math.floor(lo / GRID) + 1  # the cell (t_{i-1}, t_i] lo starts in
            hi = min(end, index * GRID)
            cell = cells.setdefault(index, [0.0, 0.0])
            cell[0] += density * (hi - lo)
            cell[1] += density * (hi - lo) * 0.5 * (lo + hi)
            lo = hi
    # Horizon: the 99.95th percentile; the rest is lumped at its end.
    running, horizon = 0.0, max(cells)
    for index in sorted(cells):
        running += cells[index][0] / total
        if running >= _HORIZON_Q:
            horizon = index
            break
    n = max(horizon, 2)
    done = [0.0] * (n + 1)
    done_time = [0.0] * (n + 1)
    budget = 0.0
    for index, (mass, weighted) in cells.items():
        p, m = mass / total, weighted / total
        j = min(index, n)
        done[j] += p
        done_time[j] += m if index <= n else p * n * GRID
        budget += p * max(1, math.ceil(m / p / budget_interval)) if p > 0 else 0.0
    for j in range(1, n + 1):
        done[j] += done[j - 1]
        done_time[j] += done_time[j - 1]
    done[n] = 1.0
    return done, done_time, budget
