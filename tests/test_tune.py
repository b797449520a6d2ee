"""autorec.tune: search spaces, pruning, the study-wide trial budget (two real processes on SQLite
and on a throwaway PostgreSQL server) and the test set scored once."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="autorec tune needs the [tune] extra")

from autorec import tune  # noqa: E402
from autorec.data import paper_split  # noqa: E402
from autorec.errors import ConfigError  # noqa: E402
from autorec.models import make_model  # noqa: E402
from tests.conftest import REPO_ROOT, low_rank_ratings  # noqa: E402


# -- spaces --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_name", sorted(tune.DEFAULT_SPACES))
def test_default_spaces_sample_valid_configs(model_name: str) -> None:
    """Every draw of every default space makes a config the model accepts (random draws, so
    every range and choice is visited, conditional step sizes included)."""
    space = tune.load_space(model_name, None)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen: set[str] = set()
    for _ in range(25):
        trial = study.ask()
        options = tune.config_options(model_name, tune.suggest(trial, space))
        make_model(model_name, **options)  # raises on a value the config rejects
        seen |= set(trial.params)
        study.tell(trial, 1.0)
    assert seen == set(space.names())  # every parameter, each conditional one included


def test_autorec_space_covers_the_issue_list() -> None:
    names = set(tune.load_space("i-autorec", None).names())
    assert {"k", "depth", "lam", "input_dropout", "f", "g", "optimizer"} <= names
    assert {"lr_rprop", "lr_adam"} <= names  # each optimiser's step on its own range
    lam = next(p for p in tune.load_space("i-autorec", None).params if p.name == "lam")
    assert lam.log


def test_step_size_follows_its_optimizer() -> None:
    space = tune.load_space("i-autorec", None)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(20):
        trial = study.ask()
        tune.suggest(trial, space)
        chosen = "lr_" + trial.params["optimizer"]
        assert chosen in trial.params
        assert not {"lr_rprop", "lr_adam"} - {chosen} & set(trial.params)
        study.tell(trial, 1.0)


def test_the_residual_baseline_is_asked_only_with_an_identity_output() -> None:
    # baseline="bias" needs f = identity (AutoRecConfig refuses it with a sigmoid output); the
    # default space reaches both the paper's model and the residual one train/evaluate fit.
    space = tune.load_space("i-autorec", None)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    baselines = set()
    for _ in range(30):
        trial = study.ask()
        options = tune.suggest(trial, space)
        assert ("baseline" in trial.params) == (trial.params["f"] == "identity")
        baselines.add(options.get("baseline", "none"))
        study.tell(trial, 1.0)
    assert baselines == {"bias", "none"}


def test_hidden_layers_halve_towards_the_middle() -> None:
    assert tune.hidden_layers(500, 1) == (500,)
    assert tune.hidden_layers(500, 3) == (500, 250, 500)  # the paper's deep AutoRec shape
    assert tune.hidden_layers(100, 5) == (100, 50, 25, 50, 100)
    assert tune.config_options("i-autorec", {"k": 64, "depth": 3}) == {"hidden": (64, 32, 64)}
    # item-knn's k is its own field, not AutoRec's width
    assert tune.config_options("item-knn", {"k": 30}) == {"k": 30}


def test_space_file_overrides_entries(tmp_path: Path) -> None:
    path = tmp_path / "space.toml"
    path.write_text("depth = 1\n[lam]\nfloat = [10.0, 1000.0]\nlog = true\n")
    space = tune.load_space("i-autorec", path)
    params = {p.name: p for p in space.params}
    assert params["depth"].kind == "fixed" and params["depth"].value == 1
    assert (params["lam"].low, params["lam"].high) == (10.0, 1000.0)
    assert "k" in params  # entries the file does not name keep their defaults


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('{"nonsense": {"float": [0, 1]}}', "'nonsense' is not an option"),
        ('{"input_dropout": {"float": [0.0, 1.0]}}', "input_dropout=1.0 is refused"),
        ('{"lam": {"float": [0.0, 10.0], "log": true}}', "must start above 0"),
        ('{"lam": {"float": [10.0, 1.0]}}', "LOW < HIGH"),
        ('{"lam": {"float": [1.0, 10.0], "lg": true}}', "unknown key(s) lg"),
        ('{"lr_adam": {"float": [0.1, 1], "field": "lr", "when": {"solver": "x"}}}', "solver"),
        ('{"g": {"choices": ["sigmoid", "softmax"]}}', "g='softmax' is refused"),
    ],
)
def test_bad_space_file_is_refused(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "space.json"
    path.write_text(entry)
    with pytest.raises(ConfigError, match=str(path)) as caught:
        tune.load_space("i-autorec", path)
    assert message in str(caught.value)


def test_model_without_a_space_is_refused() -> None:
    with pytest.raises(ConfigError, match="nothing to tune"):
        tune.default_space("pop")


# -- pruning -------------------------------------------------------------------------------------
def _split():
    return paper_split(low_rank_ratings(n_users=60, n_items=40, density=0.3, seed=2), seed=0)


def _settings(n_trials: int) -> tune.StudySettings:
    """Tiny I-AutoRec trials over RProp's initial step: below about 1e-4 the weights barely move
    in 25 epochs, so those trials trail from the first epochs on (the hopeless ones)."""
    space = tune.space_from_dict(
        {"lr": {"float": [1e-5, 1e-2], "log": True}}, "test space", warmup=3
    )
    overrides = {"hidden": (8,), "n_epochs": 25, "patience": 25}
    return tune.StudySettings("i-autorec", space, n_trials, seed=0, overrides=overrides)


def _study(settings: tune.StudySettings, prune: bool = True) -> optuna.Study:
    return optuna.create_study(
        sampler=tune.make_sampler(settings.seed),
        pruner=tune.make_pruner(settings.space.warmup, prune=prune),
    )


def test_pruner_stops_hopeless_trials_cleanly() -> None:
    settings = _settings(12)
    study = _study(settings)
    handler = signal.getsignal(signal.SIGINT)
    ran = tune.run_study(study, settings, _split())
    assert ran == 12
    states = {t.number: t.state.name for t in study.trials}
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, states
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    # only trials with hopeless steps are pruned, never before the warm-up, never at the end
    assert max(t.params["lr"] for t in pruned) < min(t.params["lr"] for t in complete)
    for t in pruned:
        assert 3 <= t.user_attrs["epochs"] < 25
        assert max(t.intermediate_values) == t.user_attrs["epochs"]
    # the training loop's SIGINT handler is gone after a pruned fit
    assert signal.getsignal(signal.SIGINT) is handler
    assert tune.best_trial(study).state.name == "COMPLETE"


def test_no_prune_runs_every_trial_to_its_end() -> None:
    settings = _settings(7)
    study = _study(settings, prune=False)
    tune.run_study(study, settings, _split())
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 7


# -- the test set --------------------------------------------------------------------------------
def test_test_set_is_scored_once_for_the_best_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    split = _split()
    scored: list[object] = []
    real = tune.evaluate
    monkeypatch.setattr(
        tune, "evaluate", lambda model, part: scored.append(part) or real(model, part)
    )
    settings = tune.StudySettings("bias", tune.load_space("bias", None), 6, seed=0)
    study = _study(settings)
    tune.run_study(study, settings, split)
    assert all(part is split.val for part in scored)  # the study reads validation only
    best = tune.best_trial(study)
    result = tune.score_best("bias", best, split, seed=0)
    assert [part is split.test for part in scored].count(True) == 1
    assert scored[-1] is split.test
    # the protocol's retrain on train + validation with the best config
    expected = make_model("bias", **{**best.user_attrs["config"]}).fit(split.train.merge(split.val))
    assert result["test_rmse"] == pytest.approx(real(expected, split.test)["rmse"])


def test_trials_and_the_retrain_fit_no_ranking_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """I-AutoRec fits its ranking head by default; it changes no rating, so a study scored by
    RMSE leaves it out (every trial and the retrain), while best.json keeps the default."""
    from autorec.models import autorec_rank

    fitted: list[object] = []
    real = autorec_rank.fit_ranking_head
    monkeypatch.setattr(
        autorec_rank, "fit_ranking_head", lambda *a, **k: fitted.append(a) or real(*a, **k)
    )
    split = _split()
    make_model("i-autorec", hidden=(8,), n_epochs=2).fit(split.train, split.val)
    assert fitted  # the default I-AutoRec does fit one: the patch sees it
    fitted.clear()
    settings = _settings(3)
    study = _study(settings)
    tune.run_study(study, settings, split)
    best = tune.best_trial(study)
    tune.score_best("i-autorec", best, split, seed=0)
    assert fitted == []
    assert "ranking_head" not in tune.best_config("i-autorec", best, {})["options"]


# -- the budget across processes -----------------------------------------------------------------
def _two_processes(
    storage: str, tmp_path: Path, ratings_file: Path, n_trials: int = 8
) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "AUTOREC_LOG_DIR": str(tmp_path)}
    argv = [
        sys.executable, "-m", "autorec", "tune", "--dataset", str(ratings_file),
        "--model", "bias", "--trials", str(n_trials), "--storage", storage,
        "--study", "shared", "--no-test", "--threads", "1", "-q",
    ]  # fmt: skip
    procs = [
        subprocess.Popen(
            [*argv, "--output", str(tmp_path / f"out{i}")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outputs.append(out)
    return outputs


def _check_exact_budget(storage: str, outputs: list[str], n_trials: int = 8) -> None:
    study = optuna.load_study(study_name="shared", storage=storage)
    counted = [t for t in study.get_trials() if tune.holds_slot(t)]
    assert len(counted) == n_trials
    assert all(tune.finished(t) for t in counted)  # none left running
    numbers = [t.number for t in study.get_trials()]
    assert len(numbers) == len(set(numbers))
    # what each process says it ran adds up to the total: none lost, none counted twice
    ran = [int(out.split(" run by this process")[0].rsplit("; ", 1)[1]) for out in outputs]
    assert sum(ran) == n_trials, outputs


@pytest.fixture
def ratings_file(tmp_path: Path) -> Path:
    data = low_rank_ratings(n_users=40, n_items=30, density=0.4, seed=5)
    path = tmp_path / "ratings.csv"
    rows = zip(data.user_idx, data.item_idx, data.rating, strict=True)
    path.write_text("".join(f"{u},{i},{int(r)}\n" for u, i, r in rows))
    return path


def test_trials_is_the_total_of_two_processes_on_sqlite(tmp_path: Path, ratings_file: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    outputs = _two_processes(storage, tmp_path, ratings_file)
    _check_exact_budget(storage, outputs)


def _pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian's postgresql package keeps its server tools off PATH
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server (initdb in a temporary folder, a free port) with an empty
    database; skips, saying why, where no server can start."""
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server tools (initdb, pg_ctl) not installed")
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 (the [tune] extra) not installed")
    owner = {}
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as another user
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            owner = {"user": entry.pw_uid, "group": entry.pw_gid}
            break
        else:
            pytest.skip("running as root and no 'postgres' or 'nobody' user to run PostgreSQL")
    root = Path(tempfile.mkdtemp(prefix="autorec-pg-"))
    if owner:
        os.chown(root, owner["user"], owner["group"])
    data, port = root / "data", _free_port()

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, **owner)

    try:
        made = run(initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        if made.returncode != 0:
            pytest.skip(f"initdb failed: {made.stderr.strip()[-300:]}")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = root / "server.log"
        started = run(
            pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"
        )
        if started.returncode != 0:
            tail = log.read_text()[-300:] if log.exists() else started.stderr[-300:]
            pytest.skip(f"PostgreSQL did not start: {tail.strip()}")
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE autorec_tune")
        conn.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/autorec_tune"
    finally:
        if (data / "postmaster.pid").exists():
            run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_trials_is_the_total_of_two_processes_on_postgresql(
    tmp_path: Path, ratings_file: Path, postgres_url: str
) -> None:
    outputs = _two_processes(postgres_url, tmp_path, ratings_file)
    _check_exact_budget(postgres_url, outputs)


def test_a_trial_numbered_past_the_total_fits_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The race the processes rely on the rule for, replayed in one: between this process's
    look at the study (2 of 3 finished) and its new trial, another process starts one. The new
    trial is numbered past the total, so it is marked over budget and fails without a fit, and
    the study ends with exactly 3 trials holding a slot."""
    settings = tune.StudySettings("bias", tune.load_space("bias", None), 3, seed=0)
    study = _study(settings)
    for _ in range(2):
        study.tell(study.ask(), 1.0)
    real_ask = study.ask
    racing: list[optuna.Trial] = []

    def ask_after_another_process(*args, **kwargs):
        if not racing:
            racing.append(real_ask())  # the other process's trial, running
        return real_ask(*args, **kwargs)

    monkeypatch.setattr(study, "ask", ask_after_another_process)
    fitted: list[object] = []
    monkeypatch.setattr(tune, "make_model", lambda *a, **k: fitted.append(a) or make_model(*a, **k))
    assert tune.run_study(study, settings, _split()) == 0
    assert not fitted
    over = [t for t in study.trials if t.user_attrs.get("over_budget")]
    assert [(t.number, t.state.name) for t in over] == [(3, "FAIL")]
    study.tell(racing[0], 1.0)
    assert sum(tune.holds_slot(t) for t in study.trials) == 3
    assert tune.trial_rows(study)[-1]["number"] == 2  # the placeholder is not a trial row
