"""A Python grpcio client (stubs from stock protoc) calls every verb of
`courier gateway`, in front of a real node holding echo, adder, sloth and
quitter. Run by ctest: python_client_test.py COURIER TEST_NODE STUBS_DIR."""

import os
import signal
import subprocess
import sys
import tempfile
import time

courier_cli, test_node, stubs = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, stubs)

import grpc  # noqa: E402
from google.protobuf import any_pb2  # noqa: E402
from courier.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402
from courier_test.v1 import test_pb2  # noqa: E402

failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAILED:", what, flush=True)


def packed(msg):
    out = any_pb2.Any()
    out.Pack(msg)
    return out


def read_line(process, deadline_s=30):
    """The process's next output line, within the deadline."""
    end = time.monotonic() + deadline_s
    line = b""
    os.set_blocking(process.stdout.fileno(), False)
    while time.monotonic() < end:
        chunk = process.stdout.read(1)
        if chunk:
            if chunk == b"\n":
                return line.decode()
            line += chunk
        elif process.poll() is not None:
            break
        else:
            time.sleep(0.01)  # a poll interval, bounded by the deadline
    raise RuntimeError("no line from %s" % process.args[0])


with tempfile.TemporaryDirectory(prefix="courier-gateway-py-") as folder:
    node = subprocess.Popen(
        [test_node, "--dir", folder, "--name", "peer", "echo.p", "adder",
         "sloth", "quitter"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    # (It stays up while its stdin is open.)
    gateway = None
    try:
        while read_line(node) != "ready":
            pass
        gateway = subprocess.Popen(
            [courier_cli, "--dir", folder, "--name", "gw", "gateway",
             "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE)
        port = read_line(gateway).rsplit(" ", 1)[1]
        channel = grpc.insecure_channel("127.0.0.1:" + port)
        stub = gateway_pb2_grpc.GatewayStub(channel)

        sent = stub.Send(gateway_pb2.SendRequest(
            name="adder", message=packed(test_pb2.Add(a=40, b=2))), timeout=5)
        total = test_pb2.Sum()
        check(sent.reply.Unpack(total) and total.value == 42, "send adder")

        stub.Post(gateway_pb2.PostRequest(
            name="echo.p", message=packed(test_pb2.Ping(seq=1))), timeout=5)

        found = stub.Find(gateway_pb2.FindRequest(name="echo.p"), timeout=5)
        check(found.node == "peer", "find echo.p: " + found.node)

        names = stub.Names(gateway_pb2.NamesRequest(pattern="*"), timeout=5)
        listed = {(n.actor, n.node) for n in names.names}
        check(("adder", "peer") in listed and ("sloth", "peer") in listed,
              "names: %s" % sorted(listed))

        each = stub.Broadcast(gateway_pb2.BroadcastRequest(
            pattern="echo.*", message=packed(test_pb2.Ping(seq=9))), timeout=5)
        pong = test_pb2.Pong()
        check(len(each.replied) == 1 and each.replied[0].name == "echo.p"
              and each.replied[0].reply.Unpack(pong) and pong.seq == 9,
              "broadcast echo.*")

        try:
            stub.Send(gateway_pb2.SendRequest(
                name="nobody", message=packed(test_pb2.Ping())), timeout=5)
            check(False, "send to nobody succeeded")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.NOT_FOUND, "nobody: %s" % e.code())

        garbage = any_pb2.Any(type_url="type.googleapis.com/courier_test.v1.Ping",
                              value=b"\xff\xff\xff\xff")
        try:
            stub.Send(gateway_pb2.SendRequest(name="echo.p", message=garbage),
                      timeout=5)
            check(False, "a garbage payload was taken")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT,
                  "garbage: %s" % e.code())

        began = time.monotonic()
        try:
            stub.Send(gateway_pb2.SendRequest(
                name="sloth", message=packed(test_pb2.Hold())), timeout=0.3)
            check(False, "the sloth answered")
        except grpc.RpcError as e:
            took = time.monotonic() - began
            check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED,
                  "sloth: %s" % e.code())
            check(took < 0.3 + 0.05 + 0.2, "sloth took %.3f s" % took)

        downs = stub.Monitor(gateway_pb2.MonitorRequest(name="quitter"),
                             timeout=10)
        time.sleep(0.2)  # a pause: the watch is set up on the server's side
        stub.Post(gateway_pb2.PostRequest(
            name="quitter", message=packed(test_pb2.Quit())), timeout=5)
        notices = list(downs)
        check(len(notices) == 1 and notices[0].name == "quitter"
              and notices[0].reason == "stopped", "monitor: %s" % notices)
        channel.close()

        # The same gateway behind mutual TLS, with certificates from
        # `courier cert`: a client with one of the CA's certificates is
        # served, one without a certificate is not.
        certs = os.path.join(folder, "certs")
        subprocess.run([courier_cli, "cert", "ca", "--out", certs], check=True,
                       stdout=subprocess.DEVNULL)
        for name in ("gw2", "caller"):
            subprocess.run([courier_cli, "cert", "node", name, "--ca", certs,
                            "--out", certs], check=True,
                           stdout=subprocess.DEVNULL)
        tls_gateway = subprocess.Popen(
            [courier_cli, "--dir", folder, "--name", "gw2", "gateway",
             "--listen", "127.0.0.1:0",
             "--certificate", os.path.join(certs, "gw2.pem"),
             "--private-key", os.path.join(certs, "gw2.key"),
             "--ca", os.path.join(certs, "ca.pem")], stdout=subprocess.PIPE)
        try:
            tls_port = read_line(tls_gateway).rsplit(" ", 1)[1]

            def read(name):
                with open(os.path.join(certs, name), "rb") as f:
                    return f.read()

            def find_over_tls(key, chain):
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=read("ca.pem"), private_key=key,
                    certificate_chain=chain)
                with grpc.secure_channel(
                        "127.0.0.1:" + tls_port, credentials,
                        options=[("grpc.ssl_target_name_override", "gw2")]) as c:
                    stub = gateway_pb2_grpc.GatewayStub(c)
                    return stub.Find(gateway_pb2.FindRequest(name="adder"),
                                     timeout=5).node

            check(find_over_tls(read("caller.key"), read("caller.pem")) == "peer",
                  "find over mutual TLS")
            try:
                find_over_tls(None, None)
                check(False, "a client without a certificate was served")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.UNAVAILABLE,
                      "no certificate: %s" % e.code())
        finally:
            tls_gateway.send_signal(signal.SIGTERM)
            tls_gateway.wait(10)
    finally:
        for process in (gateway, node):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

if failures:
    print("%d check(s) failed" % len(failures))
    sys.exit(1)
print("all checks passed")
