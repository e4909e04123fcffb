"""Nothing is trusted from a staging area: the attacks of issue 11, done as an attacker would.

bigfile's committer runs as root; the attacker is ``nobody`` (uid 65534), the service user
the patch workers run as, who can therefore write the job's staging folder; on S3, anyone
with the bucket's keys. Each attack (a forged ``direct`` path, a forged ``target`` and
``identity``, a traversal job id, forged staged shard names, a manifest swapped after
planning, a batch whose staging is not its job's folder) must fail with a clear
:class:`BigFileError`, with every file of the victim's folders byte-for-byte, mode and owner
as it was. Then the benign neighbours: concurrent jobs sharing a target and a staging parent
never remove each other's files, and recovery on S3 aborts no upload bigfile did not begin.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_bigfile import (
    BigFileError,
    Patch,
    PlannedEdit,
    Replace,
    SourceChangedError,
    StagingError,
    commit_edit,
    edit_file,
    patch_batch,
    plan_edit,
    recover_target,
)
from airflow_bigfile.plan.manifest import Manifest
from tests.model import apply_model
from tests.neighbours import NOBODY, require_root, switch_user

SHARD = "4KiB"
ORIGINAL = b"".join(b"%06d,user%d@old.com,aaaa,bbbb,cccc\n" % (i, i % 97) for i in range(1500))
EDITS = [Replace(b"@old.com", b"@new.com")]
SECRET = b"root-only secret\n" * 100


def _nobody(script: str, *args: str, stdin: bytes = b"") -> None:
    """Run a shell ``script`` (with ``args`` as $1...) as the unprivileged user."""
    subprocess.run([*switch_user(), "sh", "-c", script, "sh", *args], input=stdin, check=True,
                   capture_output=True)


@dataclass
class Place:
    """A staging parent the attacker can write: its URL, the options to reach it, how to
    read a staged file, and the attacker's way of replacing files in a job folder."""

    parent: str
    options: dict[str, Any] | None
    read: Callable[[str], bytes]
    forge: Callable[[str, dict[str, bytes]], None]

    def job(self, planned: PlannedEdit) -> str:
        return planned.staging


def _local_place(tmp_path: Path) -> Place:
    require_root()
    # nobody must reach the shared folder: let others traverse (not list) its ancestors
    for folder in [tmp_path, *tmp_path.parents][:4]:
        os.chmod(folder, os.stat(folder).st_mode | stat.S_IXOTH)
    parent = tmp_path / "shared"
    parent.mkdir()

    def forge(job: str, files: dict[str, bytes]) -> None:
        # The workers run as the service user (nobody here), so a job folder is theirs to
        # write (an attacker's own folder is simply theirs); the attacker shares that uid.
        Path(job).mkdir(exist_ok=True)
        for root, dirs, names in os.walk(job):
            for name in [".", *dirs, *names]:
                os.lchown(os.path.join(root, name), NOBODY, NOBODY)
        for name, data in files.items():
            _nobody('rm -f "$1" && cat > "$1"', f"{job}/{name}", stdin=data)

    return Place(str(parent), None, lambda url: Path(url).read_bytes(), forge)


def _s3_place(s3: Any) -> Place:
    fs = s3.fs

    def read(url: str) -> bytes:
        fs.invalidate_cache()
        return fs.cat(url)

    def forge(job: str, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            fs.pipe(f"{job}/{name}", data)

    return Place(s3.url("stage"), dict(s3.storage_options), read, forge)


@pytest.fixture(params=["local", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    if request.param == "local":
        return _local_place(tmp_path)
    return _s3_place(request.getfixturevalue("s3"))


@dataclass
class Victim:
    """The target's folder (the target, a root-only secret, an attacker's decoy) and a
    precious file one level up, where a traversal job id would land."""

    folder: Path
    target: Path
    secret: Path
    decoy: Path
    precious: Path

    def snapshot(self) -> dict[str, tuple[bytes, int, int, int]]:
        out = {}
        for path in [*sorted(self.folder.iterdir()), self.precious,
                     *sorted(self.folder.parent.glob("x*"))]:
            st = path.lstat()
            out[str(path)] = (path.read_bytes() if path.is_file() else b"", st.st_mode,
                              st.st_uid, st.st_ino)
        return out


@pytest.fixture
def victim(tmp_path: Path) -> Victim:
    folder = tmp_path / "data"
    folder.mkdir()
    files = {"table.csv": (ORIGINAL, 0o600), "secret.csv": (SECRET, 0o600),
             "decoy.csv": (ORIGINAL, 0o644)}
    for name, (data, mode) in files.items():
        (folder / name).write_bytes(data)
        os.chmod(folder / name, mode)
    precious = tmp_path / "precious.new"
    precious.write_bytes(b"precious\n")
    (tmp_path / "x").write_bytes(b"not a shard\n")
    return Victim(folder, folder / "table.csv", folder / "secret.csv", folder / "decoy.csv",
                  precious)


def _plan(place: Place, path: Path, edits: list = EDITS) -> PlannedEdit:
    return plan_edit(str(path), edits, staging=place.parent, staging_options=place.options,
                     shard_size=SHARD, max_batches=3)


def _patch(place: Place, batch: dict[str, Any]) -> dict[str, Any]:
    return patch_batch(batch, staging_options=place.options)


def _commit(place: Place, staging: str, **kwargs: Any) -> Any:
    return commit_edit(staging, staging_options=place.options, **kwargs)


def _manifest(place: Place, planned: PlannedEdit) -> dict[str, Any]:
    return json.loads(place.read(f"{planned.staging}/manifest.json"))


def assert_refused(victim: Victim, before: dict, call: Callable[[], Any], match: str
             ) -> BigFileError:
    with pytest.raises(BigFileError, match=match) as info:
        call()
    assert victim.snapshot() == before
    return info.value


# -- the attacks ---------------------------------------------------------------------------

def test_forged_direct_path_is_refused(place: Place, victim: Victim) -> None:
    """``direct`` naming another file: the worker would have written into it."""
    planned = _plan(place, victim.target)
    forged = {**_manifest(place, planned), "direct": str(victim.secret)}
    place.forge(planned.staging, {"manifest.json": json.dumps(forged).encode()})
    before = victim.snapshot()
    assert_refused(victim, before, lambda: _patch(place, planned.batches[0]),
             "does not match the plan .SHA-256")
    assert_refused(victim, before, lambda: _commit(place, planned.staging, batches=planned.batches),
             "changed after planning")


def test_direct_is_a_flag_not_a_path() -> None:
    """Even a manifest with the right digest cannot name a path: ``direct`` is a bool."""
    obj = {"version": 1, "job_id": "20250101T000000-0123abcd", "target": "t",
           "identity": {"size": 0}, "edits": [], "align": 1, "delimiter": None,
           "block_size": 1, "staging": "", "created": 0.0, "shards": [],
           "direct": "/etc/passwd"}
    with pytest.raises(StagingError, match="direct flag '/etc/passwd' is not true or false"):
        Manifest.from_json(obj)
    assert Manifest.from_json({**obj, "direct": True}).direct is True


def test_forged_target_and_identity_are_refused(place: Place, victim: Victim) -> None:
    """A plan of the attacker's decoy turned into a plan of the root-only secret."""
    planned = _plan(place, victim.decoy)
    summaries = [_patch(place, b) for b in planned.batches]
    st = victim.secret.stat()
    forged = {**_manifest(place, planned), "target": str(victim.secret),
              "identity": {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                           "inode": st.st_ino, "etag": None}}
    place.forge(planned.staging, {"manifest.json": json.dumps(forged).encode()})
    before = victim.snapshot()
    assert_refused(victim, before, lambda: _commit(place, planned.staging, batches=summaries),
             "does not match the plan")


TRAVERSAL = "staging/../../precious"


def test_traversal_job_id_is_refused(place: Place, victim: Victim) -> None:
    """A job id that climbs out of the folders: the commit would have removed
    ``../precious.new`` (its "new file") and the staging parent's neighbours."""
    planned = _plan(place, victim.target)
    summaries = [_patch(place, b) for b in planned.batches]
    forged_staging = f"{place.parent}/{TRAVERSAL}"
    forged = [{**s, "job_id": TRAVERSAL, "staging": forged_staging} for s in summaries]
    before = victim.snapshot()
    message = "'staging/../../precious' is not a bigfile job id"
    assert_refused(victim, before, lambda: _patch(place, forged[0]), message)
    assert_refused(victim, before, lambda: _commit(place, forged_staging, batches=forged), message)
    assert_refused(victim, before, lambda: _commit(place, forged_staging,
                                             manifest_sha256=planned.manifest_sha256),
             "'precious' is not a bigfile job id")
    # the same job id planted in the manifest itself
    place.forge(planned.staging, {"manifest.json": json.dumps(
        {**_manifest(place, planned), "job_id": TRAVERSAL}).encode()})
    assert_refused(victim, before, lambda: _commit(place, planned.staging, batches=summaries),
             "changed after planning")


@pytest.mark.parametrize("name", ["../../x#0", "/etc/passwd#0", "shards-0000000-0000000a.bin#-1",
                                  "shards-0000000-0000000a.bin/../../../x#0", "results#0"])
def test_forged_staged_names_are_refused(place: Place, victim: Victim, name: str) -> None:
    """A worker's result file (not covered by the digest) naming a shard outside the job's
    staging folder: the commit would have read it into the target."""
    planned = _plan(place, victim.target)
    summaries = [_patch(place, b) for b in planned.batches]
    results = f"results/batch-{summaries[0]['first']:07d}.json"
    found = json.loads(place.read(f"{planned.staging}/{results}"))
    changed = [r for r in found if r["staged"] is not None]
    assert changed
    changed[0]["staged"] = name
    place.forge(planned.staging, {results: json.dumps(found).encode()})
    before = victim.snapshot()
    assert_refused(victim, before, lambda: _commit(place, planned.staging, batches=summaries),
             "names the staged shard .* which bigfile never makes")


def test_result_outside_its_batch_is_refused(place: Place, victim: Victim) -> None:
    planned = _plan(place, victim.target)
    summaries = [_patch(place, b) for b in planned.batches]
    assert len(summaries) > 1
    results = f"results/batch-{summaries[0]['first']:07d}.json"
    found = json.loads(place.read(f"{planned.staging}/{results}"))
    found[-1]["index"] = summaries[0]["last"] + 1
    place.forge(planned.staging, {results: json.dumps(found).encode()})
    before = victim.snapshot()
    assert_refused(victim, before, lambda: _commit(place, planned.staging, batches=summaries),
             f"result for shard {summaries[0]['last'] + 1}, outside its batch")


def test_manifest_swapped_after_planning_is_refused(place: Place, victim: Victim) -> None:
    """Another plan's manifest (other edits), its job id set to this job's, put in place of
    this one's: before the workers run, and after."""
    mine = _plan(place, victim.target)
    other = _plan(place, victim.target, [Patch(10, b"EVIL")])
    swapped = {**_manifest(place, other), "job_id": mine.job_id}
    before = victim.snapshot()
    summaries = [_patch(place, b) for b in mine.batches]
    place.forge(mine.staging, {"manifest.json": json.dumps(swapped).encode()})
    assert_refused(victim, before, lambda: _patch(place, mine.batches[0]), "changed after planning")
    assert_refused(victim, before, lambda: _commit(place, mine.staging, batches=summaries),
             "changed after planning")
    # the other plan is intact and commits its own edit
    for batch in other.batches:
        _patch(place, batch)
    _commit(place, other.staging, batches=other.batches, target=str(victim.target))
    assert victim.target.read_bytes() == apply_model(ORIGINAL, [Patch(10, b"EVIL")])


def test_batch_staging_must_be_its_jobs_folder(place: Place, victim: Victim) -> None:
    planned = _plan(place, victim.target)
    evil = f"{place.parent}/evil"
    place.forge(evil, {"manifest.json": place.read(f"{planned.staging}/manifest.json")})
    forged = {**planned.batches[0], "staging": evil}
    before = victim.snapshot()
    message = f"staging '{evil}' is not the folder of its job {planned.job_id}"
    assert_refused(victim, before, lambda: _patch(place, forged), message)
    assert_refused(victim, before, lambda: _commit(place, evil, batches=[forged]), message)
    assert_refused(victim, before, lambda: _commit(place, evil,
                                             manifest_sha256=planned.manifest_sha256),
             "the staging .*/evil: 'evil' is not a bigfile job id")


def test_commit_needs_the_plan_and_its_target(place: Place, victim: Victim) -> None:
    """A staging folder alone is not trusted; a plan of another file is refused; the same
    file through a symlink is the same target."""
    planned = _plan(place, victim.target)
    for batch in planned.batches:
        _patch(place, batch)
    before = victim.snapshot()
    assert_refused(victim, before, lambda: _commit(place, planned.staging),
             "needs the plan's batches .* or its manifest_sha256")
    assert_refused(victim, before, lambda: _commit(place, planned.staging, batches=planned.batches,
                                             target=str(victim.secret)),
             f"the plan is for {victim.target}, not for {victim.secret}")
    link = victim.folder.parent / "link.csv"
    link.symlink_to(victim.target)
    result = _commit(place, planned.staging, manifest_sha256=planned.manifest_sha256,
                     target=str(link))
    assert victim.target.read_bytes() == apply_model(ORIGINAL, EDITS)
    assert result.matches == ORIGINAL.count(b"@old.com")


def test_commit_operator_refuses_a_plan_of_another_path(tmp_path: Path, victim: Victim
                                                        ) -> None:
    from airflow.sdk.exceptions import AirflowFailException
    from airflow_bigfile.operators import BigFileCommitOperator

    planned = plan_edit(str(victim.target), EDITS, staging=str(tmp_path / "stage"),
                        shard_size=SHARD)
    summaries = [patch_batch(b) for b in planned.batches]
    before = victim.snapshot()
    with pytest.raises(AirflowFailException, match="the plan is for"):
        BigFileCommitOperator(task_id="c", results=summaries,
                              path=str(victim.secret)).execute({})
    assert victim.snapshot() == before
    BigFileCommitOperator(task_id="c", results=summaries, path=str(victim.target)).execute({})
    assert victim.target.read_bytes() == apply_model(ORIGINAL, EDITS)


# -- object stores: recovery aborts only bigfile's own uploads -----------------------------

def test_planted_upload_markers_are_not_aborted(s3: Any) -> None:
    fs, bucket = s3.fs, s3.bucket
    fs.pipe(f"{bucket}/obj.bin", b"x" * 1000)
    fs.pipe(f"{bucket}/other.bin", b"y" * 1000)
    foreign = fs.call_s3("create_multipart_upload", Bucket=bucket, Key="other.bin")["UploadId"]
    mine = fs.call_s3("create_multipart_upload", Bucket=bucket, Key="obj.bin")["UploadId"]
    unnamed = fs.call_s3("create_multipart_upload", Bucket=bucket, Key="obj.bin")["UploadId"]
    uploads = f"{bucket}/.obj.bin.bigfile-staging/uploads"
    fs.pipe(f"{uploads}/{foreign}", b"20250101T000000-0123abcd")  # another key's upload
    fs.pipe(f"{uploads}/{unnamed}", b"../../x")  # not a job id
    fs.pipe(f"{uploads}/{mine}", b"20250101T000000-89abcdef")  # a killed commit's
    fs.pipe(f"{uploads}/done-upload", b"20250101T000000-89abcdef")  # completed: listed nowhere
    fs.pipe(f"{bucket}/.obj.bin.bigfile-staging/not-a-job/keep", b"k")
    result = recover_target(s3.url("obj.bin"), storage_options=s3.storage_options)
    assert sorted(result.removed) == sorted([f"s3://{uploads}/{mine}",
                                             f"s3://{uploads}/done-upload"])
    assert sorted(result.kept) == sorted([f"s3://{uploads}/{foreign}",
                                          f"s3://{uploads}/{unnamed}",
                                          f"s3://{bucket}/.obj.bin.bigfile-staging/not-a-job"])
    listed = fs.call_s3("list_multipart_uploads", Bucket=bucket)["Uploads"]
    assert sorted((u["Key"], u["UploadId"]) for u in listed) == sorted(
        [("other.bin", foreign), ("obj.bin", unnamed)])
    fs.invalidate_cache()
    assert fs.cat(f"{bucket}/.obj.bin.bigfile-staging/not-a-job/keep") == b"k"


def test_s3_target_manifest_swap_is_refused(s3: Any) -> None:
    """The digest covers manifests of object-store targets staged in the same bucket."""
    fs, key = s3.fs, f"{s3.bucket}/t.csv"
    fs.pipe(key, ORIGINAL)
    planned = plan_edit(s3.url("t.csv"), EDITS, staging=s3.url("stage"),
                        storage_options=s3.storage_options, shard_size=SHARD)
    summaries = [patch_batch(b, storage_options=s3.storage_options) for b in planned.batches]
    manifest = json.loads(fs.cat(f"{planned.staging}/manifest.json"))
    fs.pipe(f"{planned.staging}/manifest.json",
            json.dumps({**manifest, "target": s3.url("other.csv")}).encode())
    with pytest.raises(StagingError, match="changed after planning"):
        commit_edit(planned.staging, storage_options=s3.storage_options, batches=summaries)
    fs.invalidate_cache()
    assert fs.cat(key) == ORIGINAL
    assert not fs.exists(f"{s3.bucket}/other.csv")


# -- concurrent jobs on one target and one staging parent ---------------------------------

ROUNDS = 10
JOBS = {"a": (b"aaaa", b"AAAAA"), "b": (b"bbbb", b"BB"), "c": (b"cccc", b"CCCC")}


def _until_committed(run: Callable[[], Any]) -> int:
    """Run a job until it commits: another job's commit in between changes the source, the
    only failure allowed. Returns the attempts."""
    for attempt in range(1, 50):
        try:
            run()
            return attempt
        except SourceChangedError:
            continue
    raise AssertionError("never committed")


def _worker(run: Callable[[], Any], errors: list[BaseException]) -> None:
    try:
        _until_committed(run)
    except BaseException as exc:  # the test reports it
        errors.append(exc)


@pytest.mark.parametrize("shared", [True, False], ids=["staging-parent", "default-staging"])
def test_concurrent_jobs_never_remove_each_others_files(tmp_path: Path, shared: bool) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "table.csv"
    parent = tmp_path / "stage"
    parent.mkdir()
    staging = str(parent) if shared else None

    def pipeline(find: bytes, new: bytes) -> None:
        planned = plan_edit(str(path), [Replace(find, new)], staging=staging,
                            shard_size=SHARD, max_batches=3, wait=60)
        # a worker that read the source after another job's commit records an error, and
        # the commit refuses: the source changed
        summaries = [patch_batch(b) for b in planned.batches]
        commit_edit(planned.staging, batches=summaries, target=str(path), wait=60)

    def edit(find: bytes, new: bytes) -> None:
        edit_file(str(path), [Replace(find, new)], staging=staging, shard_size=SHARD,
                  workers=2, wait=60)

    for _ in range(ROUNDS):
        path.write_bytes(ORIGINAL)
        runs = {"a": lambda: pipeline(*JOBS["a"]), "b": lambda: pipeline(*JOBS["b"]),
                "c": lambda: edit(*JOBS["c"])}
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_worker, args=(run, errors))
                   for run in runs.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        assert path.read_bytes() == apply_model(
            ORIGINAL, [Replace(find, new) for find, new in JOBS.values()])
        assert sorted(os.listdir(folder)) == ["table.csv"]
        assert os.listdir(parent) == []
