"""utils/parse_options.sh and the .done markers of utils/common.sh (Kaldi semantics)."""

import os
import subprocess

from conftest import REPO, venv_env


def bash(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script, "test.sh", *args], capture_output=True, text=True, cwd=REPO)


PARSE = """
stage=0
corpus_dir=
use_gpu=false
. utils/parse_options.sh
echo "stage=$stage corpus_dir=$corpus_dir use_gpu=$use_gpu rest=$*"
"""


def test_parse_options_sets_variables_and_stops_at_positionals():
    r = bash(PARSE, "--stage", "3", "--corpus-dir", "/a b", "--use-gpu", "true", "x", "--y")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "stage=3 corpus_dir=/a b use_gpu=true rest=x --y"


def test_parse_options_rejects_unknown_and_bad_booleans():
    r = bash(PARSE, "--no-such", "1")
    assert r.returncode != 0 and "invalid option --no-such" in r.stderr
    r = bash(PARSE, "--use-gpu", "yes")
    assert r.returncode != 0 and "true or false" in r.stderr
    r = bash(PARSE, "--stage")
    assert r.returncode != 0 and "needs a value" in r.stderr


def test_parse_options_boolean_alone_means_true():
    """`--skip-bad` as the hints say it, at the end or before another option; a positional after
    it is still an error (it could be a mistyped value)."""
    assert bash(PARSE, "--use-gpu").stdout.strip() == "stage=0 corpus_dir= use_gpu=true rest="
    r = bash(PARSE, "--use-gpu", "--stage", "2", "x")
    assert r.returncode == 0 and r.stdout.strip() == "stage=2 corpus_dir= use_gpu=true rest=x", r.stderr
    r = bash(PARSE, "--use-gpu", "x")
    assert r.returncode != 0 and "true or false" in r.stderr


def test_parse_options_config_file(tmp_path):
    conf = tmp_path / "x.conf"
    conf.write_text("stage=7\n")
    r = bash(PARSE, "--config", str(conf), "--corpus-dir", "d")
    assert r.stdout.strip() == "stage=7 corpus_dir=d use_gpu=false rest="


def test_split_opts_groups_quoted_words_and_runs_nothing(tmp_path):
    """A generated recipe passed prepare_opts unquoted: --map-chars 'ş=ș ţ=ț' reached speechtl as
    three words with the quotes in them ("unrecognized arguments: ţ=ț'"). split_opts splits as a
    command line does; a $(...) or ; in the string is a character, never run."""
    marker = tmp_path / "ran"
    script = 'set -e; . utils/common.sh; split_opts w "$1"; printf "<%s>" "${w[@]}"; echo " n=${#w[@]}"'
    r = bash(script, f"--map-chars 'ş=ș ţ=ț' --x \"a b\" c $(touch {marker}); d")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"<--map-chars><ş=ș ţ=ț><--x><a b><c><$(touch><{marker});><d> n=8"
    assert not marker.exists()
    assert bash(script, "").stdout.strip() == "<> n=0"  # printf prints its format once for no words
    r = bash(script, "--x 'a")
    assert r.returncode != 0 and "unmatched quote" in r.stdout


def test_source_key_changes_when_a_pretrained_folder_is_replaced(tmp_path):
    """hf:DIR and whisper:DIR entered the .done keys by name only: new weights written over the old
    ones retrained nothing (a generated recipe finished stage 3 in 0.2 s)."""
    d = tmp_path / "w2v"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"old weights")
    key = 'set -e; . utils/common.sh; source_key "$1"'
    first = bash(key, f"hf:{d}").stdout
    assert first.startswith(f"source=hf:{d} ") and bash(key, f"hf:{d}").stdout == first
    (d / "model.safetensors").write_bytes(b"new weights, other size")
    assert bash(key, f"hf:{d}").stdout != first
    assert bash(key, "hf:facebook/wav2vec2-base").stdout.strip() == "source=hf:facebook/wav2vec2-base"
    assert bash(key, "").stdout.strip() == "source="
    # A Hugging Face cache snapshot holds symlinks to its blobs: they count as the files they point to
    (d / "blob").write_bytes(b"cached weights")
    (d / "model.safetensors").unlink()
    (d / "model.safetensors").symlink_to(d / "blob")
    linked = bash(key, f"hf:{d}").stdout
    (d / "blob").write_bytes(b"other cached weights")
    assert bash(key, f"hf:{d}").stdout != linked
    # Markers written before the weights were keyed are kept (and rewritten), not redone: an upgrade
    # would otherwise have deleted every finished system adapted from a local pretrained folder.
    marker = tmp_path / "exp" / "sys"
    marker.mkdir(parents=True)
    (marker / ".done").write_text(f"fbank=1 source=hf:{d}")
    new = f"fbank=1 {bash(key, f'hf:{d}').stdout.strip()}"
    r = bash('set -e; . utils/common.sh; reset_if_changed "$1" "$2"; cat "$1/.done"', str(marker), new)
    assert r.returncode == 0 and r.stdout == new and (marker / ".done").exists()
    r = bash('set -e; . utils/common.sh; reset_if_changed "$1" "$2"; ls -A "$1"', str(marker), new + " other")
    assert r.stdout.splitlines()[-1] == ".started"  # another key: started afresh, and said
    assert "finished with other arguments (now other; was ): deleting it (its model, decodes and exports)" in r.stdout


def interrupt_run_parallel(tmp_path, job: str, signal_it) -> tuple[int, str, bool]:
    """(exit status, stdout, whether a job went on to its end) of a script whose run_parallel runs
    two jobs of 2 s each (``job``: its first command) and gets ``signal_it(pid)`` 0.7 s in."""
    import signal
    import time

    marker = tmp_path / "still-running"
    script = (
        f"set -e; . utils/common.sh; job() {{ {job}; touch {marker}; }}; "
        f"run_parallel 2 {tmp_path}/log train job a b; echo not-reached"
    )
    # SIGINT as a terminal gives it: a shell started with SIGINT ignored (make test in the background,
    # under nohup) can never trap it, so the child starts with the default whatever the parent's
    p = subprocess.Popen(["bash", "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    time.sleep(0.7)
    signal_it(p.pid)
    out, _ = p.communicate(timeout=30)
    time.sleep(2.5)
    return p.returncode, out, marker.exists()


def test_ctrl_c_during_run_parallel_says_so_and_stops_the_jobs(tmp_path):
    """Ctrl-C in a stage's parallel trainings printed nothing on the console (the tracebacks went
    to the jobs' logs); now it says what stopped and that a rerun resumes, and leaves no job behind."""
    import os
    import signal

    rc, out, went_on = interrupt_run_parallel(tmp_path, "sleep 2", lambda pid: os.killpg(pid, signal.SIGINT))
    assert rc == 130 and "Interrupted: the train jobs are stopped" in out and "not-reached" not in out
    assert not went_on
    # A plain kill of the script alone (SIGTERM to its pid, not the group): the jobs' own processes
    # (a python under two subshells) were left running to the end.
    sleeper = "python3 -c 'import time; time.sleep(2)'"
    rc, out, went_on = interrupt_run_parallel(tmp_path, sleeper, lambda pid: os.kill(pid, signal.SIGTERM))
    assert rc == 130 and "Interrupted" in out and not went_on


def test_done_markers_skip_same_arguments_and_redo_others(tmp_path):
    marker = tmp_path / "stage" / ".done"
    script = f""". utils/common.sh
if is_done {marker} "$1"; then echo skipped; else echo working; mark_done {marker} "$1"; fi"""
    assert bash(script, "a=1").stdout.strip() == "working"
    assert bash(script, "a=1").stdout.strip() == "skipped"
    out = bash(script, "a=2").stdout
    assert "other arguments" in out and out.strip().endswith("working")
    assert marker.read_text() == "a=2"


def test_reset_if_changed_keeps_only_runs_of_the_same_arguments(tmp_path):
    """A finished run of other arguments is removed; so is an interrupted one started with other
    arguments (its checkpoints are another run's: resuming them mixed two runs or failed on the
    optimizer state); an interrupted run of the same arguments is kept for training to resume."""
    exp = tmp_path / "exp"
    script = f""". utils/common.sh
reset_if_changed {exp} "$1"
ls -A {exp} | tr '\\n' ' '"""
    assert bash(script, "lr=1").stdout.split() == [".started"]
    (exp / "checkpoint-last.pt").write_text("interrupted")
    assert sorted(bash(script, "lr=1").stdout.split()) == [".started", "checkpoint-last.pt"]  # resumed
    out = bash(script, "lr=2").stdout
    assert "started with other arguments" in out and out.split()[-1] == ".started"  # afresh
    assert (exp / ".started").read_text() == "lr=2\n"
    (exp / "final.pt").write_text("done")
    (exp / ".done").write_text("lr=2")
    assert ".done" in bash(script, "lr=2").stdout.split()  # finished with these arguments: kept
    out = bash(script, "lr=3").stdout  # finished with others: removed, and said with what changed
    assert out.split()[-1] == ".started" and "(now lr=3; was lr=2): deleting it" in out


def test_run_parallel_shares_the_cores_among_the_jobs_it_has(tmp_path):
    common = REPO / "utils" / "common.sh"
    script = (
        f'. "{common}"; show() {{ echo "$OMP_NUM_THREADS"; }}; '
        f'run_parallel 4 "{tmp_path}" one show a; run_parallel 4 "{tmp_path}" many show a b c d; nproc'
    )
    cores = int(subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.split()[-1])
    one = int((tmp_path / "one.a.log").read_text())
    many = {int((tmp_path / f"many.{x}.log").read_text()) for x in "abcd"}
    assert one == cores  # one job of NJ 4: every core
    assert many == {max(1, cores // 4)}


def test_run_parallel_shows_each_jobs_warnings_on_the_console(tmp_path):
    """A training's 'num_steps is less than one epoch' warning was only in exp/log/adapt.*.log."""
    common = REPO / "utils" / "common.sh"
    warn = "2026-12-06 21:00:00,123 WARNING [trainer.py:4] num_steps 2 is less than one epoch"
    script = (
        f'set -euo pipefail; . "{common}"; '
        f'job() {{ echo "{warn}"; echo "{warn}"; echo "2026-12-06 21:00:01,000 INFO [x.py:1] fine"; }}; '
        'calm() { echo "2026-12-06 21:00:01,000 INFO [x.py:1] fine"; }; '
        f'run_parallel 2 "{tmp_path}" adapt job a; run_parallel 2 "{tmp_path}" decode calm b; echo end'
    )
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"adapt job a warned (all in {tmp_path}/adapt.a.log):" in r.stdout
    assert r.stdout.count("num_steps 2 is less than one epoch") == 1  # each distinct warning once
    assert "decode job b warned" not in r.stdout and "INFO" not in r.stdout and r.stdout.rstrip().endswith("end")


def test_run_parallel_names_failed_jobs_waits_for_all_and_stops_a_job_at_its_first_error(tmp_path):
    """Every job's status comes from the job itself (a status file), not from bash's memory of
    background pids, which lost a long-finished training's status in a 54-job stage."""
    common = REPO / "utils" / "common.sh"
    script = (
        f'set -euo pipefail; . "{common}"; '
        'job() { [ "$1" != fails ]; if [ "$1" = late ]; then sleep 1; false; echo not-reached; fi; echo done; }; '
        f'run_parallel 2 "{tmp_path}" step job a fails b late c; echo not-reached'
    )
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "not-reached" not in out
    assert "step job fails failed (1)" in out and "step job late failed (1)" in out
    assert "step job a failed" not in out and "step job c failed" not in out
    assert [(tmp_path / f"step.{x}.log").read_text() for x in "abc"] == ["done\n"] * 3
    assert "not-reached" not in (tmp_path / "step.late.log").read_text()
    assert not list(tmp_path.glob(".rc.*")), "the status files are cleaned up"


def test_the_taught_methods_of_the_shell_steps_are_the_registrys():
    """utils/common.sh's TAUGHT_METHODS (what steps/adapt_all.sh trains after its teacher, and the
    only methods with rounds) are the registered methods whose options name a teacher."""
    from speechtl.adapt import METHODS
    from speechtl.adapt.base import needs_teacher

    r = bash('. utils/common.sh; echo "$TAUGHT_METHODS"')
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) == {name for name, cls in METHODS.items() if needs_teacher(cls)}


def test_install_stops_before_torch_when_its_disk_is_too_small(tmp_path):
    """CI once died minutes into pip with `OSError: [Errno 28] No space left on device`; the
    install now measures the venv's and pip's scratch disks first and says which one to move."""
    fake = tmp_path / "bin"
    fake.mkdir()
    # df that reports 2 GB free on any path under a folder named 'small', 100 GB elsewhere
    (fake / "df").write_text(
        "#!/bin/sh\nfor a; do p=$a; done\ncase $p in *small*) kb=2097152;; *) kb=104857600;; esac\n"
        'echo "Filesystem 1024-blocks Used Available Capacity Mounted"\necho "/dev/x 1 1 $kb 1% /"\n'
    )
    (fake / "df").chmod(0o755)
    (tmp_path / "small").mkdir()
    (tmp_path / "big").mkdir()
    env = {"PATH": f"{fake}:/usr/bin:/bin", "HOME": str(tmp_path)}

    def install(venv, tmpdir):
        return subprocess.run(
            ["bash", "utils/install.sh"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**env, "VENV": str(venv), "TMPDIR": str(tmpdir)},
        )

    r = install(tmp_path / "small" / "venv", tmp_path / "big")
    assert r.returncode == 1
    assert f"needs about 7 GB free for {tmp_path / 'small' / 'venv'}" in r.stderr and "has 2 GB" in r.stderr
    assert "VENV=/big/disk/venv" in r.stderr
    assert not (tmp_path / "small" / "venv").exists()  # stopped before the venv was made
    r = install(tmp_path / "big" / "venv", tmp_path / "small")
    assert r.returncode == 1 and f"free for {tmp_path / 'small'}," in r.stderr and "TMPDIR=" in r.stderr
    assert not (tmp_path / "big" / "venv").exists()


def test_new_recipe_wrapper_takes_egs_dir_in_both_spellings(tmp_path):
    """`--egs-dir=DIR` was not seen by utils/new_recipe.sh, which then added its own --egs-dir egs/
    last, so argparse wrote the recipe into this checkout instead."""
    (tmp_path / "corpus").mkdir()
    for name, flag in [("eq", [f"--egs-dir={tmp_path / 'egs'}"]), ("sp", ["--egs-dir", str(tmp_path / "egs")])]:
        argv = [
            "bash",
            "utils/new_recipe.sh",
            f"tmp_{name}",
            "--corpus",
            "folder",
            "--corpus-dir",
            str(tmp_path / "corpus"),
        ]
        r = subprocess.run([*argv, *flag], capture_output=True, text=True, cwd=REPO, env=venv_env())
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "egs" / f"tmp_{name}" / "ASR" / "run.sh").is_file()
        assert not (REPO / "egs" / f"tmp_{name}").exists()


def test_a_relative_corpus_dir_is_read_from_where_the_command_was_given(tmp_path):
    """`make demo ARGS="--text-dir ../shared/data/text"`, typed at the repo root: make runs run.sh in
    the recipe dir, where that path does not exist; stage 1 then stopped on missing files."""
    (tmp_path / "caller" / "text").mkdir(parents=True)
    (tmp_path / "recipe" / "here").mkdir(parents=True)
    script = f""". {REPO}/utils/common.sh
stage=1 stop_stage=1 dl_dir=download invoked_from={tmp_path / "caller"}
cd {tmp_path / "recipe"}
text_dir=$1
corpus_or_download text_dir download/text tts_xling key text
echo "text_dir=$text_dir" """
    out = bash(script, "text")
    assert f"text_dir={tmp_path / 'caller' / 'text'}" in out.stdout and "read from" in out.stderr + out.stdout
    assert f"text_dir={tmp_path / 'recipe' / 'here'}" in bash(script, "here").stdout  # the recipe dir's first
    assert "text_dir=nowhere" in bash(script, "nowhere").stdout  # left as typed: stage 1 names it


def test_help_of_the_scripts_without_parse_options_starts_nothing(tmp_path):
    """`utils/start_slurm.sh --help` started five daemons as root, `utils/install.sh --help` ran the install."""
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    for tool in ("sinfo", "apt-get", "python3", "munged", "pip"):  # any of these run would leave its name here
        (tmp_path / tool).write_text(f"#!/bin/sh\necho {tool} >> {tmp_path}/ran\n")
        (tmp_path / tool).chmod(0o755)
    for script, first in (
        ("utils/start_slurm.sh", "Start a real one-node Slurm"),
        ("utils/install.sh", "Installs what"),
    ):
        r = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, cwd=REPO, env=env)
        assert r.returncode == 0 and r.stdout.startswith(first), (script, r.stdout, r.stderr)
    assert not (tmp_path / "ran").exists()


def test_steps_decode_labels_rows_by_the_checkpoint(small_yesno, tmp_path):
    """steps/decode.sh passed --method scratch --data all whatever it decoded: a finetune model in
    exp/finetune_3min/ became a scratch/all row. Left out, the checkpoint and its folder name them."""
    from speechtl.models import ModelConfig, build_model
    from speechtl.score.results import read_results
    from speechtl.train.checkpoint import save_checkpoint
    from speechtl.train.trainer import seed_everything

    d, cuts, lang = small_yesno
    exp = tmp_path / "exp" / "finetune_3min"
    exp.mkdir(parents=True)
    seed_everything(1)
    save_checkpoint(
        exp / "final.pt",
        build_model(ModelConfig(num_features=23), lang.vocab_size),
        tokens=lang.token2id,
        method="finetune",
    )
    cuts_path = tmp_path / "cuts.jsonl.gz"
    cuts.subset(first=2).to_file(cuts_path)
    results = tmp_path / "results.tsv"
    args = ["--decoding", "greedy", "--results", results, exp / "final.pt", d / "lang", cuts_path, exp / "decode"]
    r = subprocess.run(
        ["bash", "steps/decode.sh", *map(str, args)], cwd=REPO, env=venv_env(), capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    (row,) = read_results(results)
    assert (row.method, row.data) == ("finetune", "3min")
    r = subprocess.run(
        ["bash", "steps/decode.sh", "--method", "mine", "--data", "x", *map(str, args)],
        cwd=REPO,
        env=venv_env(),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and {(x.method, x.data) for x in read_results(results)} == {
        ("finetune", "3min"),
        ("mine", "x"),
    }


def test_a_marker_from_before_a_fingerprint_was_keyed_is_kept_and_upgraded(tmp_path):
    """tts_xling's stage 1 keys on its sentences' checksum since 2026-12-07: a marker written before
    (no text=) would otherwise redo synthesis, fbank, the source and every system once."""
    marker = tmp_path / ".done"
    marker.write_text("text_dir=/t 123 45")
    script = f""". utils/common.sh
if is_done {marker} "$1"; then echo skipped; else echo working; fi"""
    assert bash(script, "text_dir=/t 123 45 text=99-7").stdout.strip() == "skipped"
    assert marker.read_text() == "text_dir=/t 123 45 text=99-7"
    assert bash(script, "text_dir=/t 123 45 text=11-7").stdout.strip().endswith("working")  # the text changed


def test_a_stage_that_is_not_a_number_stops_the_recipe():
    """`./run.sh --stage abc` printed "integer expression expected" at every gate, ran nothing, exited 0."""
    r = bash("stage=abc stop_stage=100; . utils/common.sh; echo ran")
    assert r.returncode == 1 and "--stage 'abc' is not a stage number" in r.stdout + r.stderr and "ran" not in r.stdout
    r = bash("stage=5 stop_stage=4; . utils/common.sh; echo ran")
    assert r.returncode == 0 and "no stage runs" in r.stdout + r.stderr


def test_a_stage_past_the_recipes_last_is_said():
    """`./run.sh --stage 7` in a recipe whose last stage is 6 ran nothing and said nothing."""
    r = subprocess.run(
        ["./run.sh", "--stage", "7"], capture_output=True, text=True, cwd=REPO / "egs" / "yesno" / "ASR", env=venv_env()
    )
    assert r.returncode == 0 and "--stage 7 is after this recipe's last stage, 6: no stage runs" in r.stdout
    r = subprocess.run(
        ["./run.sh", "--stage", "6", "--stop-stage", "5"],
        capture_output=True,
        text=True,
        cwd=REPO / "egs" / "yesno" / "ASR",
        env=venv_env(),
    )
    assert "last stage" not in r.stdout and "--stage 6 is after --stop-stage 5" in r.stdout


def _lang(d, lexicon: str, lm_key: str):
    d.mkdir(parents=True, exist_ok=True)
    (d / "tokens.txt").write_text("<blk> 0\ny 1\nn 2\n")
    (d / "lexicon.txt").write_text(lexicon)
    (d / "G.fst").write_text(lm_key)  # stands in for the LM's files: not part of the units
    (d / ".done").write_text(f"corpus=/c {lm_key}")


def test_units_key_follows_the_units_not_the_lm(tmp_path):
    """Training's keys held the whole lang key, so another --lm-order retrained every model."""
    units = '. utils/common.sh; units_key "$@"'
    _lang(tmp_path / "a", "YES y\nNO n\n", "lm_order=1")
    _lang(tmp_path / "b", "YES y\nNO n\n", "lm_order=3")
    with open(tmp_path / "b" / "tokens.txt", "a") as f:
        f.write("#0 3\n#1 4\n")  # disambiguation symbols follow the LM's words, not the units
    _lang(tmp_path / "c", "YES y\nNO n n\n", "lm_order=1")
    ka, kb, kc = (bash(units, str(tmp_path / x)).stdout.strip() for x in "abc")
    assert ka.startswith("units=") and ka.endswith(f":{tmp_path}/a/.done")
    assert ka.split(":")[0] == kb.split(":")[0] != kc.split(":")[0]
    # sentencepiece units: their pieces (tokens.txt), not the lexicon (the LM's words) nor the model's
    # bytes (older models hold a temporary path, other at every build)
    (tmp_path / "a" / "bpe.model").write_bytes(b"pieces, /tmp/tmpabc/sp")
    k_sp = bash(units, str(tmp_path / "a")).stdout.split(":")[0]
    assert k_sp != ka.split(":")[0]
    (tmp_path / "a" / "bpe.model").write_bytes(b"pieces, /tmp/tmpxyz/sp")
    (tmp_path / "a" / "lexicon.txt").write_text("YES y\nNO n\nMORE y n\n")
    assert bash(units, str(tmp_path / "a")).stdout.split(":")[0] == k_sp
    assert bash(units, str(tmp_path / "a"), "data/.lang.done").stdout.strip().endswith(":data/.lang.done")
    r = bash(units, str(tmp_path / "none"))
    assert r.returncode == 1 and "tokens.txt is missing" in r.stderr and r.stdout == ""


def test_a_training_marker_keyed_on_the_whole_lang_is_upgraded_not_redone(tmp_path):
    """Markers written when training keys held the lang's whole key are rewritten with the units key
    (nested too: a decode's key holds its model's); after an LM change they are not (the lang was rebuilt)."""
    lang = tmp_path / "lang"
    _lang(lang, "YES y\nNO n\n", "lm_order=1")
    script = '. utils/common.sh; k="fb $(units_key $1) conf=2"; if is_done $2 "$3$k$4"; then echo skipped; else echo working; fi'
    train = tmp_path / "train.done"
    train.write_text("fb corpus=/c lm_order=1 conf=2")
    assert bash(script, str(lang), str(train), "", "").stdout.strip() == "skipped"
    assert train.read_text().startswith("fb units=") and train.read_text().endswith(f":{lang}/.done conf=2")
    decode = tmp_path / "decode.done"  # an older decode marker: the old training key, and no graph= then
    decode.write_text("dec fb corpus=/c lm_order=1 conf=2")
    assert bash(script, str(lang), str(decode), "dec ", " graph=1-2").stdout.strip() == "skipped"
    assert decode.read_text() == f"dec {train.read_text()} graph=1-2"
    stale = tmp_path / "stale.done"
    stale.write_text("fb corpus=/c lm_order=2 conf=2")  # trained before another LM was built
    assert bash(script, str(lang), str(stale), "", "").stdout.strip().endswith("working")
    assert stale.read_text() == "fb corpus=/c lm_order=2 conf=2"
    # markers of the release before: a decode's with graph= and model= already, and an init= added since
    head = tmp_path / "head.done"
    head.write_text("dec fb corpus=/c lm_order=1 conf=2 graph=1-2")
    assert bash(script, str(lang), str(head), "dec ", " graph=1-2").stdout.strip() == "skipped"
    init = tmp_path / "init.done"
    init.write_text("fb corpus=/c lm_order=1 conf=2 graph=1-2")
    assert bash(script, str(lang), str(init), "", " init=5-6 graph=1-2").stdout.strip() == "skipped"
    # a lang key holding a fingerprint itself (tts_xling's text=) is matched as it is, not stripped
    nested = tmp_path / "nested"
    _lang(nested, "YES y\nNO n\n", "text=9-1 lm_order=1")
    old = tmp_path / "nested.done"
    old.write_text("fb corpus=/c text=9-1 lm_order=1 conf=2")
    assert bash(script, str(nested), str(old), "", "").stdout.strip() == "skipped"
    # a lang rebuilt after the marker (deleted and made again: maybe other units) is not trusted
    later = tmp_path / "later.done"
    later.write_text("fb corpus=/c lm_order=1 conf=2")
    os.utime(lang / ".done", (later.stat().st_mtime + 5, later.stat().st_mtime + 5))
    assert bash(script, str(lang), str(later), "", "").stdout.strip().endswith("working")
