"""Champion against challenger: which of the two versions did better on the same decisions, once their labels
are known. The table that keeps the verdicts, ``monitoring.champion_challenger``, is owned here.

**The decisions.** The replayed decision log (``prediction_log``): every symbol's decisions of the last
``window_hours`` whose label is known by the end of the hour, each scored by both versions with point-in-time
features (outputs read from, or added to, ``monitoring.predictions``). Both versions answer exactly the same
rows, so the comparison is paired. A served decision (the API's prediction log) is the same decision row with
the same point-in-time features, so replaying it gives the answer that was served; replaying also covers the
hours and symbols nobody asked about, and needs no shadow traffic. Served decisions the challenger scored in
shadow (a production deployment with shadow on; role ``shadow`` in ``monitoring.served_predictions``) are read
back, paired with the champion's answer of the same item, by ``served_pairs``.

**The test: Diebold-Mariano on paired losses**, with a Newey-West (HAC, Bartlett kernel) variance:

- the loss of each decision is the log-loss for a classifier, the squared error for a regressor; the loss
  differential is ``d = loss(challenger) - loss(champion)`` (negative: the challenger did better);
- decisions taken at the same time share the market's move, so their differentials are correlated across
  symbols: they are averaged per decision time first (one cluster per time), and the test runs on that series;
- labels look ``horizon_bars`` ahead, so consecutive decision times share most of their label window and the
  series is autocorrelated up to the horizon: the HAC lag is twice the horizon (in decisions, one per bar), since
  the Bartlett kernel underweights the autocovariances near its bandwidth (with lag = horizon, a placebo was
  called 10% of the time at a 5% level);
- ``DM = mean(d) / sqrt(HAC variance / T)`` (checked in the tests against statsmodels' OLS of ``d`` on a constant
  with ``cov_type="HAC"``), two-sided p-value from Student's t with ``T // lag - 1`` degrees of freedom: a week
  holds only ``T / lag`` roughly independent stretches of labels (7 for the 24-hour volatility label), and the
  normal approximation then calls placebos far too often (measured: 12% at 1% for that label; with t: under 1%).

Why not an always-valid sequential test: those (mixture SPRTs and the like) assume independent observations,
which overlapping labels and cross-sectional correlation break, and correcting them for dependence is what the
HAC variance already does. The price of re-testing a rolling window every hour is a higher chance of a false
"better" over many hours; ``alpha`` is therefore strict (0.01) and a verdict only raises an alert (deduplicated
per challenger and day): promotion stays governed, a false alarm costs a reviewer's look, never a deployment.

Verdicts: ``challenger better`` (p < alpha, challenger's mean loss lower), ``challenger worse`` (p < alpha, higher),
``undecided`` (otherwise, or fewer than ``min_decision_times`` decision times). No champion, no challenger, or no
labelled decision in the window: said so, and no verdict is written.
"""

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from mlops_pipelines.lib.core import warehouse
from mlops_pipelines.lib.core.alerts import Alert, Alerter
from mlops_pipelines.lib.features.feature_views import FeatureCatalog
from mlops_pipelines.lib.features.point_in_time import ENTITY_TIME
from mlops_pipelines.lib.monitoring import prediction_log, served_predictions
from mlops_pipelines.lib.monitoring.hourly_run import DeployedVersion, HourlyWindow, LoadBooster
from mlops_pipelines.lib.training.model_specs import ModelSpec

CHALLENGE_TABLE = "monitoring.champion_challenger"
DDL = """
    model VARCHAR, partition_key VARCHAR, champion VARCHAR, challenger VARCHAR, window_start TIMESTAMP WITH TIME ZONE,
    window_end TIMESTAMP WITH TIME ZONE, loss VARCHAR, n_decisions BIGINT, n_decision_times BIGINT,
    champion_loss DOUBLE, challenger_loss DOUBLE, mean_difference DOUBLE, statistic DOUBLE, p_value DOUBLE,
    hac_lag INTEGER, alpha DOUBLE, verdict VARCHAR
"""  # one row per model and partition that had a verdict
COLUMNS = [
    "model", "partition_key", "champion", "challenger", "window_start", "window_end", "loss", "n_decisions",
    "n_decision_times", "champion_loss", "challenger_loss", "mean_difference", "statistic", "p_value", "hac_lag",
    "alpha", "verdict",
]  # fmt: skip
EPS = 1e-15  # probabilities are clipped as lib/core/metrics.log_loss does


class Verdict(StrEnum):
    BETTER = "challenger better"
    WORSE = "challenger worse"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class ChallengePolicy:
    window_hours: int = 168  # decisions of the last week whose label is known
    alpha: float = 0.01  # strict: the rolling window is tested every hour
    min_decision_times: int = 48  # fewer: undecided, whatever the statistic
    max_labelled: int = 200_000  # a deterministic subset beyond this (prediction_log.decision_rows)


def losses(task: str, label: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Per decision: log-loss (classification) or squared error (regression)."""
    y, p = np.asarray(label, dtype=float), np.asarray(prediction, dtype=float)
    if task == "classification":
        p = np.clip(p, EPS, 1 - EPS)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return (p - y) ** 2


@dataclass(frozen=True)
class DieboldMariano:
    n_decisions: int
    n_times: int  # decision times (clusters): the length of the tested series
    mean_difference: float  # challenger minus champion, per decision (negative: the challenger did better)
    statistic: float
    p_value: float
    lag: int


def newey_west_variance(series: np.ndarray, lag: int) -> float:
    """Long-run variance of ``series`` (Bartlett weights ``1 - j / (lag + 1)``, no small-sample correction)."""
    e = series - series.mean()
    n = len(e)
    variance = float(e @ e) / n
    for j in range(1, min(lag, n - 1) + 1):
        variance += 2 * (1 - j / (lag + 1)) * float(e[j:] @ e[:-j]) / n
    return variance


def diebold_mariano(times: np.ndarray | pd.Series, differences: np.ndarray, lag: int) -> DieboldMariano:
    """The DM test of ``differences`` (one per decision), clustered by decision time, HAC lag ``lag``."""
    frame = pd.DataFrame({"t": np.asarray(times), "d": np.asarray(differences, dtype=float)})
    series = frame.groupby("t", sort=True)["d"].mean().to_numpy()
    n_times = len(series)
    if n_times < 2:
        return DieboldMariano(len(frame), n_times, float(frame["d"].mean()) if len(frame) else math.nan, 0.0, 1.0, lag)
    mean = float(series.mean())
    variance = newey_west_variance(series, lag) / n_times
    # no variance: every decision time the same difference (zero when the two versions answer alike)
    degenerate = 0.0 if mean == 0 else math.copysign(math.inf, mean)
    statistic = mean / math.sqrt(variance) if variance > 0 else degenerate
    dof = max(n_times // max(lag, 1) - 1, 1)
    p_value = float(2 * stats.t.sf(abs(statistic), dof))
    return DieboldMariano(len(frame), n_times, float(frame["d"].mean()), statistic, p_value, lag)


def hac_lag(horizon_bars: int) -> int:
    """The Newey-West lag for a label ``horizon_bars`` ahead (decisions one per bar): twice the overlap."""
    return 2 * horizon_bars


def judge(test: DieboldMariano, policy: ChallengePolicy) -> Verdict:
    if test.n_times < policy.min_decision_times or not test.p_value < policy.alpha:
        return Verdict.UNDECIDED
    return Verdict.BETTER if test.statistic < 0 else Verdict.WORSE


@dataclass(frozen=True)
class Contest:
    """A model's champion (the ``production`` holder) and challenger (the ``challenger`` holder), as governance
    answers them (``Lifecycle.champion`` / ``challenger``, from the audit log)."""

    spec: ModelSpec
    champion: str | None
    challenger: str | None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Comparison:
    """One model's comparison over one window: ``status`` ``compared`` with the evidence, else why not."""

    model: str
    champion: str | None
    challenger: str | None
    window_start: datetime
    window_end: datetime
    status: str  # compared | no_champion | no_challenger | no_labelled_decisions
    loss: str = ""
    test: DieboldMariano | None = None
    champion_loss: float = math.nan
    challenger_loss: float = math.nan
    verdict: Verdict | None = None

    def summary(self) -> str:
        if self.test is None or self.verdict is None:
            reasons = {
                "no_champion": "no PRODUCTION version",
                "no_challenger": "no challenger (no version holds the challenger alias)",
                "no_labelled_decisions": "no decision with a known label in the window",
            }
            return f"{self.model}: {reasons.get(self.status, self.status)}, no verdict"
        t = self.test
        return (
            f"{self.model}: v{self.challenger} vs champion v{self.champion}: {self.verdict} ({t.n_decisions} "
            f"decisions at {t.n_times} times, {self.window_start:%Y-%m-%d %H:%M} to {self.window_end:%Y-%m-%d %H:%M} "
            f"UTC; mean {self.loss} difference {t.mean_difference:+.5f}, DM {t.statistic:.2f}, p {t.p_value:.4f}, "
            f"HAC lag {t.lag})"
        )

    def row(self, partition_key: str, alpha: float) -> dict[str, object]:
        assert self.test is not None and self.verdict is not None
        t = self.test
        return {
            "model": self.model,
            "partition_key": partition_key,
            "champion": self.champion,
            "challenger": self.challenger,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "loss": self.loss,
            "n_decisions": t.n_decisions,
            "n_decision_times": t.n_times,
            "champion_loss": self.champion_loss,
            "challenger_loss": self.challenger_loss,
            "mean_difference": t.mean_difference,
            "statistic": t.statistic,
            "p_value": t.p_value,
            "hac_lag": t.lag,
            "alpha": alpha,
            "verdict": str(self.verdict),
        }


def compare(
    conn: duckdb.DuckDBPyConnection,
    contest: Contest,
    catalog: FeatureCatalog,
    load_booster: LoadBooster,
    policy: ChallengePolicy,
    *,
    window_end: datetime,
) -> Comparison:
    """Score the window's labelled decisions with both versions (the prediction log) and test the losses."""
    start = window_end - timedelta(hours=policy.window_hours)
    base = Comparison(contest.name, contest.champion, contest.challenger, start, window_end, "")
    if contest.champion is None:
        return _with(base, status="no_champion")
    if contest.challenger is None:
        return _with(base, status="no_challenger")
    spec = contest.spec
    decisions = prediction_log.decision_rows(
        conn, spec, start, window_end, labelled_by=window_end, max_rows=policy.max_labelled
    )
    if decisions.empty:
        return _with(base, status="no_labelled_decisions")
    scored = {}
    for alias, version in (("production", contest.champion), ("challenger", contest.challenger)):
        booster = load_booster(DeployedVersion(spec, version, alias, ""))
        scored[alias] = prediction_log.logged_scores(conn, spec, version, catalog, booster, decisions)
    key = ["symbol", ENTITY_TIME]
    paired = scored["production"].merge(
        scored["challenger"][[*key, "prediction"]], on=key, suffixes=("_champion", "_challenger"), validate="1:1"
    )
    champion_loss = losses(spec.task, paired["label"].to_numpy(), paired["prediction_champion"].to_numpy())
    challenger_loss = losses(spec.task, paired["label"].to_numpy(), paired["prediction_challenger"].to_numpy())
    differences = challenger_loss - champion_loss
    test = diebold_mariano(paired[ENTITY_TIME], differences, lag=hac_lag(spec.label.horizon_bars))
    return _with(
        base,
        status="compared",
        loss="log-loss" if spec.task == "classification" else "squared error",
        test=test,
        champion_loss=float(champion_loss.mean()),
        challenger_loss=float(challenger_loss.mean()),
        verdict=judge(test, policy),
    )


def served_pairs(
    conn: duckdb.DuckDBPyConnection, model: str, champion: str, challenger: str, start: datetime, end: datetime
) -> pd.DataFrame:
    """The served decisions of [start, end) that ``champion`` answered and ``challenger`` scored in shadow: one row
    per item (``served_predictions.shadow_pairs``), only this pair of versions."""
    pairs = served_predictions.shadow_pairs(conn, model, start, end)
    chosen = (pairs["version_champion"] == champion) & (pairs["version_challenger"] == challenger)
    return pairs[chosen].reset_index(drop=True)


def _with(base: Comparison, **changes: object) -> Comparison:
    return Comparison(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def write_comparison(conn: duckdb.DuckDBPyConnection, comparison: Comparison, partition_key: str, alpha: float) -> None:
    """This partition's verdict for the model, replacing a previous run's (none when there was no verdict)."""
    rows = [comparison.row(partition_key, alpha)] if comparison.verdict is not None else []
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("window_start", "window_end"):
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
    warehouse.replace_rows(
        conn,
        CHALLENGE_TABLE,
        frame,
        where="partition_key = ? AND model = ?",
        params=[partition_key, comparison.model],
        create_sql=DDL,
    )


def verdicts(conn: duckdb.DuckDBPyConnection, model: str | None = None) -> pd.DataFrame:
    """Every stored verdict (of ``model``), oldest partition first."""
    if not warehouse.table_exists(conn, CHALLENGE_TABLE):
        return pd.DataFrame()
    where, params = ("WHERE model = ?", [model]) if model else ("", [])
    return conn.execute(f"SELECT * FROM {CHALLENGE_TABLE} {where} ORDER BY model, partition_key", params).fetchdf()


@dataclass(frozen=True)
class ChallengeRun:
    comparisons: list[Comparison]
    alerted: list[str] = field(default_factory=list)  # models whose challenger was judged better


def monitor_champion_challenger(
    conn: duckdb.DuckDBPyConnection,
    contests: list[Contest],
    window: HourlyWindow,
    *,
    catalog: FeatureCatalog,
    load_booster: LoadBooster,
    alerter: Alerter,
    policy: ChallengePolicy,
) -> ChallengeRun:
    """Compare, persist and report every model's champion and challenger for one hour. "Better" raises one
    alert per challenger and day; nothing else happens: promotion stays governed."""
    run = ChallengeRun(comparisons=[])
    for contest in contests:
        comparison = compare(conn, contest, catalog, load_booster, policy, window_end=window.end)
        write_comparison(conn, comparison, window.partition_key, policy.alpha)
        run.comparisons.append(comparison)
        if comparison.verdict == Verdict.BETTER:
            alerter.raise_alert(
                Alert(
                    kind="challenger_better",
                    subject=contest.name,
                    episode=f"v{contest.challenger}:{window.episode}",
                    summary=comparison.summary() + "; promotion stays a governed decision",
                    details={
                        **comparison.row(window.partition_key, policy.alpha),
                        "window_start": comparison.window_start.isoformat(),
                        "window_end": window.end.isoformat(),
                    },
                )
            )
            run.alerted.append(contest.name)
    return run
