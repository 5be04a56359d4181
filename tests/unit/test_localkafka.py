"""The local broker's files, checks and messages, without starting any broker."""

from __future__ import annotations

import argparse
import base64
import json
import socket
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.localkafka import LocalKafka, LocalKafkaError, commands
from app.localkafka.files import new_cluster_id, render_server_properties
from app.localkafka.jars import render_pom
from app.localkafka.probe import probe_metadata


def kafka_cli(argv: list[str]) -> int:
    """``surge kafka ...`` without importing the other subcommands."""
    parser = argparse.ArgumentParser(prog="surge kafka")
    commands.add_arguments(parser)
    return commands.run(parser.parse_args(argv))


def properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path / "cache")


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_server_properties_describe_a_single_loopback_kraft_node(tmp_path: Path) -> None:
    config = properties(render_server_properties(19092, 19093, tmp_path / "data"))

    assert config["process.roles"] == "broker,controller"
    assert config["node.id"] == "1"
    assert config["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert config["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert config["log.dirs"] == str(tmp_path / "data")
    assert config["num.partitions"] == "4"
    assert config["auto.create.topics.enable"] == "true"
    assert config["group.initial.rebalance.delay.ms"] == "0"
    for single_node_setting in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "default.replication.factor",
    ):
        assert config[single_node_setting] == "1"


def test_pom_asks_for_broker_tools_and_a_log_binding() -> None:
    pom = render_pom("4.1.1")

    for artifact in ("kafka_2.13", "kafka-tools", "log4j-slf4j-impl", "log4j-core"):
        assert f"<artifactId>{artifact}</artifactId>" in pom
    assert pom.count("<version>4.1.1</version>") == 3  # two Kafka artifacts and the POM


def test_cluster_ids_are_distinct_16_byte_uuids() -> None:
    ids = {new_cluster_id() for _ in range(200)}

    assert len(ids) == 200
    for cluster_id in ids:
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
        assert not cluster_id.startswith("-")


def test_taken_port_is_refused_with_one_sentence(
    settings: Settings, tmp_path: Path, listening_port: int
) -> None:
    kafka = LocalKafka(settings, run_dir=tmp_path / "run", port=listening_port)

    with pytest.raises(LocalKafkaError) as raised:
        kafka.up()

    message = str(raised.value)
    assert message.startswith(f"Port {listening_port} on 127.0.0.1 is already in use")
    assert "SURGE_LOCAL_KAFKA_PORT" in message
    assert message.count(".") == 4  # the address's three dots and the final full stop
    assert not (tmp_path / "run" / "state.json").exists()


def test_cli_exits_2_with_the_sentence_when_the_port_is_taken(
    tmp_path: Path,
    listening_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SURGE_CACHE_DIR", str(tmp_path / "cache"))

    code = kafka_cli(["up", "--port", str(listening_port), "--run-dir", str(tmp_path)])

    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: Port {listening_port} on 127.0.0.1 is already in use")
    assert len(err.splitlines()) == 1


def test_missing_java_is_reported_before_anything_is_fetched(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("SURGE_CACHE_DIR", str(tmp_path / "cache"))

    with pytest.raises(LocalKafkaError, match=r"^Java is not installed .* Java 17 or newer"):
        LocalKafka(settings, run_dir=tmp_path / "run", port=0).up()
    code = kafka_cli(["up", "--port", "0", "--run-dir", str(tmp_path / "run")])

    assert code == 2
    assert "error: Java is not installed" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_missing_maven_is_reported_when_the_jars_are_not_cached(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_java = bin_dir / "java"
    fake_java.write_text("#!/bin/sh\nexit 1\n")
    fake_java.chmod(fake_java.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)

    with pytest.raises(LocalKafkaError, match=r"^Maven \(mvn\) is not on PATH"):
        LocalKafka(settings, run_dir=tmp_path / "run", port=0).up()


def test_status_and_down_of_a_never_started_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SURGE_CACHE_DIR", str(tmp_path / "cache"))
    run_dir = str(tmp_path / "run")

    assert kafka_cli(["status", "--run-dir", run_dir]) == 3
    assert "Kafka is stopped" in capsys.readouterr().out
    assert kafka_cli(["down", "--run-dir", run_dir]) == 0
    assert capsys.readouterr().out.strip() == "Kafka was not running."


def write_state(run_dir: Path, pid: int) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "pid": pid,
        "port": 1,
        "controller_port": 2,
        "bootstrap": "127.0.0.1:1",
        "log_path": str(run_dir / "broker.log"),
        "data_dir": str(run_dir / "data"),
        "cluster_id": "x",
        "kafka_version": "4.1.1",
        "started_at": 0.0,
    }
    (run_dir / "state.json").write_text(json.dumps(state))


def test_state_of_a_dead_broker_reads_as_stopped(settings: Settings, tmp_path: Path) -> None:
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    write_state(tmp_path / "run", exited.pid)
    kafka = LocalKafka(settings, run_dir=tmp_path / "run")

    assert kafka.status().running is False
    assert kafka.down() is False
    assert not (tmp_path / "run" / "state.json").exists()


def test_a_recycled_pid_of_another_program_is_not_taken_for_the_broker(
    settings: Settings, tmp_path: Path
) -> None:
    write_state(tmp_path / "run", pid=1)  # alive, but not a broker of this run dir

    status = LocalKafka(settings, run_dir=tmp_path / "run").status()

    assert status.running is False
    assert status.describe().startswith("Kafka is stopped")


def fake_broker(replies: list[bytes]) -> tuple[int, threading.Thread]:
    """A one-connection server that answers each request with the next reply."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = int(server.getsockname()[1])

    def serve() -> None:
        with server, server.accept()[0] as conn:
            for reply in replies:
                size = struct.unpack(">i", conn.recv(4))[0]
                request = conn.recv(size)
                correlation_id = request[4:8]
                payload = correlation_id + reply
                conn.sendall(struct.pack(">i", len(payload)) + payload)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def test_probe_counts_the_brokers_of_a_metadata_answer() -> None:
    api_versions = struct.pack(">hi", 0, 2) + struct.pack(">hhh", 18, 0, 4)
    api_versions += struct.pack(">hhh", 3, 0, 13)
    host = b"127.0.0.1"
    metadata = struct.pack(">ii", 1, 1) + struct.pack(">h", len(host)) + host
    metadata += struct.pack(">ih", 9092, -1) + struct.pack(">ii", 1, 0)
    port, thread = fake_broker([api_versions, metadata])

    assert probe_metadata("127.0.0.1", port, timeout=5) == 1
    thread.join(timeout=5)


def test_probe_of_a_closed_port_raises_os_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])

    with pytest.raises(OSError):
        probe_metadata("127.0.0.1", port, timeout=2)
