"""Settings from the environment and how the executor picks its identity (fake client)."""

from __future__ import annotations

import pytest

from faas_sandbox.colonies.client import key_id, new_prvkey
from faas_sandbox.errors import ColoniesRefused, ColoniesUnreachable, SettingsError
from faas_sandbox.executor.registration import Interrupted, default_name, establish, unregister
from faas_sandbox.kinds import ExecutorState
from faas_sandbox.settings import Settings

COLONY_KEY = new_prvkey()
MEMBER_KEY = new_prvkey()
BASE = {
    "COLONIES_SERVER_HOST": "127.0.0.1",
    "COLONIES_SERVER_PORT": "50080",
    "COLONIES_COLONY_NAME": "dev",
}


def test_settings_read_pycolonies_variable_names():
    env = {
        **BASE,
        "COLONIES_SERVER_TLS": "true",
        "COLONIES_COLONY_PRVKEY": COLONY_KEY,
        "COLONIES_PRVKEY": MEMBER_KEY.upper(),
        "COLONIES_EXECUTOR_NAME": "ops-1",
        "AWS_S3_ENDPOINT": "127.0.0.1:9000",
        "AWS_S3_TLS": "false",
        "AWS_S3_BUCKET": "faas",
    }
    s = Settings.from_env(env)
    assert (s.host, s.port, s.tls, s.colony_name) == ("127.0.0.1", 50080, True, "dev")
    assert s.colony_prvkey == COLONY_KEY and s.prvkey == MEMBER_KEY
    assert s.executor_name == "ops-1" and s.s3.bucket == "faas" and not s.s3.tls
    assert COLONY_KEY not in repr(s) and MEMBER_KEY not in repr(s)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "COLONIES_SERVER_HOST, COLONIES_SERVER_PORT, COLONIES_COLONY_NAME"),
        ({**BASE, "COLONIES_SERVER_PORT": "http"}, "COLONIES_SERVER_PORT: expected a port"),
        ({**BASE, "COLONIES_SERVER_PORT": "70000"}, "out of range"),
        ({**BASE, "COLONIES_PRVKEY": "abc"}, "COLONIES_PRVKEY: expected 64 hex"),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_upload_needs_the_s3_variables():
    with pytest.raises(SettingsError, match="AWS_S3_ENDPOINT, AWS_S3_ACCESSKEY"):
        Settings.from_env(BASE).s3.require_upload()
    env = {
        **BASE,
        "AWS_S3_ENDPOINT": "http://x:9000",
        "AWS_S3_ACCESSKEY": "a",
        "AWS_S3_SECRETKEY": "b",
        "AWS_S3_BUCKET": "c",
    }
    with pytest.raises(SettingsError, match="host:port without a scheme"):
        Settings.from_env(env).s3.require_upload()


class FakeRegistry:
    """Executors by name; records every registration call."""

    colony = "dev"

    def __init__(self, prvkey: str = "") -> None:
        self.prvkey = prvkey
        self.executors: dict[str, dict] = {}
        self.functions: dict[str, list[str]] = {}
        self.log: list[tuple] = []
        self.unreachable = 0

    def with_key(self, prvkey):
        other = FakeRegistry.__new__(FakeRegistry)
        other.__dict__ = self.__dict__.copy()
        other.prvkey = prvkey
        return other

    def _maybe_down(self):
        if self.__dict__["unreachable"] > 0:
            self.__dict__["unreachable"] -= 1
            raise ColoniesUnreachable("connection refused")

    def get_executor(self, name):
        if name not in self.executors:
            raise ColoniesRefused("executor is nil", 500)
        return self.executors[name]

    def add_executor(self, name, executor_id, executor_type, colony_prvkey):
        self._maybe_down()
        self.log.append(("add", name, executor_type))
        self.executors[name] = {
            "executorid": executor_id,
            "executortype": executor_type,
            "state": 0,
        }

    def approve_executor(self, name, colony_prvkey):
        self.log.append(("approve", name))
        self.executors[name]["state"] = ExecutorState.APPROVED

    def remove_executor(self, name, colony_prvkey):
        self._maybe_down()
        self.log.append(("remove", name))

    def get_functions(self, name):
        return [{"funcname": f} for f in self.functions.get(name, [])]

    def add_function(self, name, funcname):
        self.log.append(("function", name, funcname))
        self.functions.setdefault(name, []).append(funcname)


def settings(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def never() -> bool:
    return False


def test_auto_uses_a_matching_operator_identity_and_registers_execute_once():
    reg = FakeRegistry()
    reg.executors["ops-1"] = {
        "executorid": key_id(MEMBER_KEY),
        "executortype": "faas-executor",
        "state": ExecutorState.APPROVED,
    }
    s = settings(
        COLONIES_PRVKEY=MEMBER_KEY,
        COLONIES_EXECUTOR_NAME="ops-1",
        COLONIES_COLONY_PRVKEY=COLONY_KEY,
    )
    for _ in range(2):
        me = establish(s, reg, mode="auto", name=None, executor_type="faas-executor", stop=never)
        assert (me.name, me.self_registered, me.prvkey) == ("ops-1", False, MEMBER_KEY)
    assert reg.functions == {"ops-1": ["execute"]}
    unregister(reg, me, COLONY_KEY, never)
    assert ("remove", "ops-1") not in reg.log  # never remove an operator's executor


def test_auto_registers_itself_when_the_operator_identity_has_another_type():
    reg = FakeRegistry()
    reg.executors["dev-cli"] = {
        "executorid": key_id(MEMBER_KEY),
        "executortype": "cli",
        "state": ExecutorState.APPROVED,
    }
    s = settings(
        COLONIES_PRVKEY=MEMBER_KEY,
        COLONIES_EXECUTOR_NAME="dev-cli",
        COLONIES_COLONY_PRVKEY=COLONY_KEY,
    )
    me = establish(s, reg, mode="auto", name="faas-a", executor_type="faas-executor", stop=never)
    assert me.self_registered and me.name == "faas-a" and me.prvkey != MEMBER_KEY
    assert me.executor_id == key_id(me.prvkey)
    assert reg.log == [
        ("add", "faas-a", "faas-executor"),
        ("approve", "faas-a"),
        ("function", "faas-a", "execute"),
    ]
    unregister(reg, me, COLONY_KEY, never)
    assert reg.log[-1] == ("remove", "faas-a")


@pytest.mark.parametrize(
    ("executor", "problem"),
    [
        (None, "not found"),
        (
            {
                "executorid": "0" * 64,
                "executortype": "faas-executor",
                "state": ExecutorState.APPROVED,
            },
            "not that",
        ),
        (
            {"executorid": key_id(MEMBER_KEY), "executortype": "faas-executor", "state": 0},
            "not approved",
        ),
    ],
)
def test_operator_mode_explains_what_is_wrong(executor, problem):
    reg = FakeRegistry()
    if executor:
        reg.executors["ops-1"] = executor
    s = settings(COLONIES_PRVKEY=MEMBER_KEY, COLONIES_EXECUTOR_NAME="ops-1")
    with pytest.raises(SettingsError, match=problem):
        establish(s, reg, mode="operator", name=None, executor_type="faas-executor", stop=never)


def test_no_usable_identity_is_a_settings_error():
    with pytest.raises(SettingsError, match="need COLONIES_COLONY_PRVKEY"):
        establish(
            settings(),
            FakeRegistry(),
            mode="auto",
            name=None,
            executor_type="faas-executor",
            stop=never,
        )


def test_registration_waits_out_an_unreachable_server():
    reg = FakeRegistry()
    reg.unreachable = 2
    me = establish(
        settings(COLONIES_COLONY_PRVKEY=COLONY_KEY),
        reg,
        mode="self",
        name="x",
        executor_type="t",
        stop=never,
    )
    assert me.self_registered and reg.log[0] == ("add", "x", "t")


def test_a_stop_while_unreachable_interrupts_registration():
    reg = FakeRegistry()
    reg.unreachable = 100
    with pytest.raises(Interrupted):
        establish(
            settings(COLONIES_COLONY_PRVKEY=COLONY_KEY),
            reg,
            mode="self",
            name="x",
            executor_type="t",
            stop=lambda: True,
        )


def test_default_name_is_readable_and_per_process():
    import os

    name = default_name()
    assert name.startswith("faas-") and name.endswith(f"-{os.getpid()}")
