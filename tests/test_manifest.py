"""Stage manifests: what a stage produced, read back by the next stage through one loader."""

from __future__ import annotations

import json
import shutil

import pytest

from duoguard.manifest import ManifestError, StageManifest, has_manifest, read_manifest, write_manifest


def test_a_manifest_round_trips_and_its_outputs_move_with_the_folder(tmp_path):
    stage = tmp_path / "run" / "safedpo"
    (stage / "target").mkdir(parents=True)
    write_manifest(stage, StageManifest("safedpo", {"target": "target"}, {"pool": "/data/pool"}, {"delta": 10.0}))
    got = read_manifest(stage, "safedpo")
    assert got.output("target") == stage / "target"
    assert got.input("pool") == "/data/pool" and got.facts == {"delta": 10.0} and got.created
    moved = tmp_path / "elsewhere"
    shutil.move(str(tmp_path / "run"), moved)
    assert read_manifest(moved / "safedpo", "safedpo").output("target") == moved / "safedpo" / "target"


def test_a_missing_wrong_or_damaged_manifest_is_an_error_naming_the_file_and_key(tmp_path):
    with pytest.raises(ManifestError, match=r"safedpo\.game_dir=.*no manifest\.json in .*not a finished duoguard game"):
        read_manifest(tmp_path, "game", key="safedpo.game_dir")
    assert not has_manifest(tmp_path, "game")
    write_manifest(tmp_path, StageManifest("game", {"pool": "pool"}))
    assert has_manifest(tmp_path, "game")
    with pytest.raises(ManifestError, match=r"manifest\.json: a manifest of the 'game' stage, expected 'safedpo'"):
        read_manifest(tmp_path, "safedpo")
    with pytest.raises(ManifestError, match="lists no output 'pairs'"):
        read_manifest(tmp_path, "game").output("pairs")
    data = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(ManifestError, match="manifest version 99"):
        read_manifest(tmp_path, "game")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="unreadable manifest"):
        read_manifest(tmp_path, "game")
    with pytest.raises(ValueError, match="unknown stage"):
        write_manifest(tmp_path, StageManifest("gaem", {}))
