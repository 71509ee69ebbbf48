"""Security over real connections: bearer tokens (a tokens file and JWTs against a JWKS) for
every RPC, TLS and mutual TLS with certificates made here, the audit trail, and that no
reply or log line quotes a token."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # type: ignore[import-untyped]

from tarry.api._handlers import SERVICE
from tarry.server import Server
from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_client import (
    AsyncClient,
    InvalidArgument,
    PermissionDenied,
    Retry,
    TarryError,
    Unauthenticated,
)
from tests.integration.api.certs import Authority, Signer, write
from tests.integration.api.conftest import ServerFactory

TOKENS = {"reader": "r-7f3a9c1e5b", "operator": "o-2d8e4f6a1c", "admin": "a-9b1c3d5e7f"}
MUTATIONS = {"Run", "Resume", "Suspend", "Cancel", "StartBulk", "CancelBulk"}
ISSUER = "https://idp.test"


def tokens_file(path: Path) -> str:
    entries = [f'[[token]]\nsha256 = "{hashlib.sha256(t.encode()).hexdigest()}"\n'
               f'subject = "{role}-service"\nroles = ["{role}"]\n'
               for role, t in TOKENS.items()]
    return write(path / "tokens.toml", "\n".join(entries))


@pytest.fixture
async def secured(make_server: ServerFactory, tmp_path: Path) -> tuple[Server, Signer]:
    signer = Signer("key-1")
    jwks = write(tmp_path / "jwks.json", json.dumps(signer.jwks()))
    server = await make_server(auth_tokens=tokens_file(tmp_path), auth_jwks=jwks,
                               auth_issuer=ISSUER)
    return server, signer


@pytest.fixture
async def channel(secured: tuple[Server, Signer]) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured[0].port}") as ch:
        yield ch


def _status(err: grpc.aio.AioRpcError) -> tuple[str, dict[str, str], str]:
    """(ErrorInfo reason, metadata, message) of a failed call."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.reason, dict(info.metadata), status.message
    return "", {}, err.details() or ""


async def _call(channel: grpc.aio.Channel, method: str, token: str | None
                ) -> grpc.StatusCode:
    """Call `method` with an empty request; the code it ends with (a stream: OK once its
    first message came, as WatchExecutions of everything has no end of its own)."""
    descriptor = SERVICE.methods_by_name[method]
    request = getattr(pb, descriptor.input_type.name)()
    response = getattr(pb, descriptor.output_type.name)
    path = f"/{SERVICE.full_name}/{method}"
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    try:
        if descriptor.server_streaming:
            call = channel.unary_stream(path, request_serializer=type(request).SerializeToString,
                                        response_deserializer=response.FromString)
            stream = call(request, metadata=metadata, timeout=5)
            async for _ in stream:
                stream.cancel()
                break
        else:
            await channel.unary_unary(path, request_serializer=type(request).SerializeToString,
                                      response_deserializer=response.FromString)(
                request, metadata=metadata, timeout=5)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def _needs(method: str) -> str:
    return "admin" if method == "DeleteExecution" else (
        "operator" if method in MUTATIONS else "reader")


CREDENTIALS = ["none", "garbage", "expired-jwt", "wrong-issuer-jwt", "foreign-key-jwt",
               "reader", "operator", "admin", "reader-jwt", "operator-jwt"]


def _token(kind: str, signer: Signer) -> str | None:
    foreign = Signer("key-1")  # the same key id, another key
    return {"none": None, "garbage": "not-a-token",
            "expired-jwt": signer.token("late", ["admin"], expires_in=-60),
            "wrong-issuer-jwt": signer.token("elsewhere", ["admin"], issuer="https://evil"),
            "foreign-key-jwt": foreign.token("forger", ["admin"]),
            "reader-jwt": signer.token("dash", ["reader"]),
            "operator-jwt": signer.token("ops", ["operator"]),
            }.get(kind, TOKENS.get(kind))


def _role(kind: str) -> str | None:
    base = kind.removesuffix("-jwt")
    return base if base in TOKENS else None


@pytest.mark.parametrize("kind", CREDENTIALS)
async def test_every_rpc_under_every_credential(
        secured: tuple[Server, Signer], channel: grpc.aio.Channel, kind: str) -> None:
    order = {"reader": 1, "operator": 2, "admin": 3}
    token = _token(kind, secured[1])
    for method in SERVICE.methods_by_name:
        code = await _call(channel, method, token)
        role = _role(kind)
        if role is None:
            expected = grpc.StatusCode.UNAUTHENTICATED
        elif order[role] < order[_needs(method)]:
            expected = grpc.StatusCode.PERMISSION_DENIED
        else:  # past the checks: the empty request itself is answered
            assert code not in (grpc.StatusCode.UNAUTHENTICATED,
                                grpc.StatusCode.PERMISSION_DENIED), (kind, method, code)
            assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), (method, code)
            continue
        assert code is expected, (kind, method, code)


async def test_refusals_carry_error_info_and_never_the_token(
        secured: tuple[Server, Signer], channel: grpc.aio.Channel,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    for token, method, reason in ((None, "GetExecution", "UNAUTHENTICATED"),
                                  ("x" + TOKENS["admin"], "Run", "UNAUTHENTICATED"),
                                  (TOKENS["reader"], "Run", "PERMISSION_DENIED"),
                                  (TOKENS["operator"], "DeleteExecution", "PERMISSION_DENIED")):
        descriptor = SERVICE.methods_by_name[method]
        request = getattr(pb, descriptor.input_type.name)(execution_id="e-1")
        call = channel.unary_unary(
            f"/{SERVICE.full_name}/{method}", request_serializer=type(request).SerializeToString,
            response_deserializer=getattr(pb, descriptor.output_type.name).FromString)
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request, metadata=metadata, timeout=5)
        got, info, message = _status(caught.value)
        assert got == reason
        seen += [message, json.dumps(info), str(caught.value.details())]
        if reason == "PERMISSION_DENIED":
            assert info["method"] == method
    seen += [r.getMessage() for r in caplog.records]
    for token in TOKENS.values():
        assert not any(token in text for text in seen)


async def test_health_stays_open_and_reflection_is_off(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in reflect.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5):
            pass
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_the_client_sends_its_token_and_events_name_who_asked(
        secured: tuple[Server, Signer]) -> None:
    target = f"127.0.0.1:{secured[0].port}"
    async with AsyncClient(target, token=TOKENS["reader"], timeout=5) as reader:
        with pytest.raises(PermissionDenied):
            await reader.run("expense-approval")
    async with AsyncClient(target, token=secured[1].token("ops-bot", ["operator"]),
                           timeout=5) as ops:
        ex = await ops.run("expense-approval", wait=True)
        await ops.cancel(ex.id, "withdrawn")
        events = (await ops.events(ex.id)).events
    async with AsyncClient(target, timeout=5) as anonymous:
        with pytest.raises(Unauthenticated):
            await anonymous.get(ex.id)
    callers = [e.data.get("caller") for e in events if e.data]
    assert callers[0] is not None and callers[0]["subject"] == "ops-bot"
    assert callers[0]["peer"].startswith("ipv")
    assert callers[-1] is not None and callers[-1]["subject"] == "ops-bot"  # the cancel
    # The steps the driver ran on its own record no caller.
    assert any(e.type == "node_finished" and "caller" not in (e.data or {}) for e in events)


# -- TLS -----------------------------------------------------------------------------------

@pytest.fixture
async def tls_server(make_server: ServerFactory, tmp_path: Path
                     ) -> tuple[Server, Authority, Authority]:
    ca, other = Authority("tarry test CA"), Authority("another CA")
    issued = ca.issue("127.0.0.1", server=True)
    server = await make_server(tls_cert=write(tmp_path / "server.pem", issued.cert),
                               tls_key=write(tmp_path / "server.key", issued.key),
                               tls_client_ca=write(tmp_path / "ca.pem", ca.pem))
    return server, ca, other


def _tls_client(server: Server, ca: Authority, cert: Any = None) -> AsyncClient:
    credentials = grpc.ssl_channel_credentials(
        ca.pem, cert.key if cert else None, cert.cert if cert else None)
    return AsyncClient(f"127.0.0.1:{server.port}", credentials=credentials, timeout=3,
                       retry=Retry(attempts=1))


@pytest.mark.parametrize("case", ["plaintext", "no-client-cert", "other-ca-cert",
                                  "expired-cert", "good-cert"])
async def test_mutual_tls(tls_server: tuple[Server, Authority, Authority], case: str) -> None:
    server, ca, other = tls_server
    if case == "plaintext":
        client = AsyncClient(f"127.0.0.1:{server.port}", timeout=3, retry=Retry(attempts=1))
    else:
        cert = {"no-client-cert": None, "other-ca-cert": other.issue("intruder"),
                "expired-cert": ca.issue("old-service", expired=True),
                "good-cert": ca.issue("billing-service")}[case]
        client = _tls_client(server, ca, cert)
    async with client:
        if case != "good-cert":
            with pytest.raises(TarryError) as caught:
                await client.workflows()
            assert caught.value.code is grpc.StatusCode.UNAVAILABLE
            return
        ex = await client.run("expense-approval", wait=True)
        first = (await client.events(ex.id)).events[0]
        assert first.data is not None
        assert first.data["caller"]["subject"] == "billing-service"  # the certificate's CN
        with pytest.raises(InvalidArgument):
            await client.get("")


# -- namespaces ----------------------------------------------------------------------------

TENANTS = {"team-a": "ta-4b9d2e7f1a", "team-b": "tb-8c1e5f3a2d"}


@pytest.fixture
async def tenants(make_server: ServerFactory, tmp_path: Path) -> str:
    entries = [f'[[token]]\nsha256 = "{hashlib.sha256(t.encode()).hexdigest()}"\n'
               f'subject = "{ns}-ops"\nroles = ["admin"]\nnamespaces = ["{ns}"]\n'
               for ns, t in TENANTS.items()]
    server = await make_server(auth_tokens=write(tmp_path / "tenants.toml", "\n".join(entries)))
    return f"127.0.0.1:{server.port}"


def _answer(err: TarryError, execution_id: str) -> tuple[object, ...]:
    """Everything a refusal tells, with the id it quotes blanked out."""
    def blank(text: str) -> str:
        return text.replace(execution_id, "<id>")
    return (err.code, err.reason, blank(err.message),
            {k: blank(v) for k, v in err.metadata.items()}, err.violations, err.preconditions)


async def test_another_namespace_is_a_world_of_its_own(tenants: str) -> None:
    async with (AsyncClient(tenants, token=TENANTS["team-a"], timeout=5) as a,
                AsyncClient(tenants, token=TENANTS["team-b"], timeout=5) as b):
        mine = await a.run("expense-approval", wait=True)
        # The same execution id and request id in two namespaces: two executions.
        a1 = await a.run("expense-approval", execution_id="order-1", wait=True)
        b1 = await b.run("conditional-workflow", execution_id="order-1", wait=True)
        assert a1.id == b1.id == "order-1" and a1.workflow != b1.workflow
        ra = await a.run("expense-approval", request_id="same-key")
        rb = await b.run("expense-approval", request_id="same-key")
        assert ra.id != rb.id
        assert (await a.get("order-1")).workflow == "expense-approval"
        # To team-b, team-a's execution is exactly a missing one: same code, message
        # and details for every RPC that names an execution.
        missing = "never-existed-0000"
        calls: list[Any] = [
            lambda c, i: c.get(i), lambda c, i: c.resume(i, {"approved": True}),
            lambda c, i: c.suspend(i, "x"), lambda c, i: c.cancel(i, "x"),
            lambda c, i: c.delete(i), lambda c, i: c.events(i),
            lambda c, i: _drain(c.watch(i)), lambda c, i: _drain(c.watch(i, 0))]
        for call in calls:
            answers = []
            for target in (mine.id, missing):
                with pytest.raises(TarryError) as caught:
                    await call(b, target)
                answers.append(_answer(caught.value, target))
            assert answers[0] == answers[1]
            assert answers[0][0] is grpc.StatusCode.NOT_FOUND
        # An id that spells another namespace out reaches nothing either.
        with pytest.raises(TarryError) as caught:
            await b.get(f"team-a/{mine.id}")
        assert caught.value.code is grpc.StatusCode.NOT_FOUND
        # Listings never cross.
        listed_b = {ex.id for ex in (await b.list_executions(page_size=1000)).executions}
        listed_a = {ex.id for ex in (await a.list_executions(page_size=1000)).executions}
        assert mine.id in listed_a and mine.id not in listed_b
        assert {"order-1", rb.id} <= listed_b and ra.id not in listed_b
        assert (await a.get(mine.id)).status.value == "AWAITING"  # untouched by team-b
    async with AsyncClient(tenants, token=TENANTS["team-a"], namespace="team-b",
                           timeout=5) as astray:
        with pytest.raises(PermissionDenied) as denied:
            await astray.get("order-1")
        assert denied.value.metadata["namespace"] == "team-b"


async def _drain(items: AsyncIterator[object]) -> None:
    async for _ in items:
        pass
