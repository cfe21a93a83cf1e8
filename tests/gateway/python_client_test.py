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
         "sloth", "quitter", "counter"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    # (It stays up while its stdin is open.)
    gateway = None
    try:
        while read_line(node) != "ready":
            pass
        gateway = subprocess.Popen(
            [courier_cli, "--dir", folder, "--name", "gw", "gateway",
             "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE)
        address = read_line(gateway).rsplit(" ", 1)[1]
        channel = grpc.insecure_channel(address)
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

        # Many posts in one call, in order: the counter saw all of them, none
        # out of order (its Sum is count * 1e6 + out-of-order).
        pings = [gateway_pb2.PostRequest(
            name="counter", message=packed(test_pb2.Ping(seq=i)))
            for i in range(200)]
        streamed = stub.PostStream(iter(pings), timeout=10)
        check(streamed.posted == 200, "post stream: %s" % streamed)
        total = stub.Send(gateway_pb2.SendRequest(
            name="counter", message=packed(test_pb2.Add(a=0, b=0))), timeout=5)
        tally = test_pb2.Sum()
        total.reply.Unpack(tally)
        check(tally.value == 200 * 1000000, "counted: %d" % tally.value)
        # The first refused ends the stream, saying how many went before.
        broken = [gateway_pb2.PostRequest(
            name="counter", message=packed(test_pb2.Ping(seq=200 + i)))
            for i in range(3)]
        broken.append(gateway_pb2.PostRequest(
            name="nobody", message=packed(test_pb2.Ping(seq=0))))
        broken += pings[:2]
        try:
            stub.PostStream(iter(broken), timeout=10)
            check(False, "a stream with an unknown name was taken whole")
        except grpc.RpcError as e:
            posted = dict(e.trailing_metadata() or ()).get("courier-posted")
            check(e.code() == grpc.StatusCode.NOT_FOUND and posted == "3"
                  and "after 3 posted" in e.details(),
                  "post stream refused: %s %s %s" % (e.code(), posted,
                                                     e.details()))
        channel.close()

        # A local socket: callers are uid:N as the kernel says. The rule
        # lets user 65534 (nobody) send to echo.p and nothing else; this
        # process's own user (root) gets nothing.
        os.chmod(folder, 0o755)  # nobody reaches the socket in it
        socket_path = os.path.join(folder, "gw.sock")
        local_gateway = subprocess.Popen(
            [courier_cli, "--dir", folder, "--name", "gw3", "gateway",
             "--listen", "unix:" + socket_path, "--socket-mode", "0666",
             "--rule", "uid:65534 echo.p send"], stdout=subprocess.PIPE)
        try:
            local_address = read_line(local_gateway).rsplit(" ", 1)[1]
            check(local_address == "unix:" + socket_path,
                  "local address: %s" % local_address)
            check(os.stat(socket_path).st_mode & 0o777 == 0o666,
                  "socket mode: %o" % os.stat(socket_path).st_mode)
            as_nobody = r"""
import sys
sys.path.insert(0, sys.argv[1])
import grpc
from google.protobuf import any_pb2
from courier.v1 import gateway_pb2, gateway_pb2_grpc
from courier_test.v1 import test_pb2
stub = gateway_pb2_grpc.GatewayStub(grpc.insecure_channel(sys.argv[2]))
ping = any_pb2.Any()
ping.Pack(test_pb2.Ping(seq=9))
sent = stub.Send(gateway_pb2.SendRequest(name="echo.p", message=ping),
                 timeout=5)
print("sent", sent.reply.type_url)
try:
    stub.Post(gateway_pb2.PostRequest(name="adder", message=ping), timeout=5)
    print("posted")
except grpc.RpcError as e:
    print(e.code().name, e.details())
"""
            nobody = subprocess.run(
                ["setpriv", "--reuid", "65534", "--regid", "65534",
                 "--clear-groups", sys.executable, "-c", as_nobody, stubs,
                 local_address], capture_output=True, timeout=60, text=True)
            lines = nobody.stdout.splitlines()
            check(nobody.returncode == 0 and len(lines) == 2
                  and lines[0] == "sent type.googleapis.com/courier_test.v1.Pong"
                  and lines[1].startswith("PERMISSION_DENIED uid:65534 may not "
                                          "post to 'adder'"),
                  "uid 65534 over the local socket: %s %s" % (lines,
                                                              nobody.stderr))
            with grpc.insecure_channel(local_address) as c:
                try:
                    gateway_pb2_grpc.GatewayStub(c).Send(gateway_pb2.SendRequest(
                        name="echo.p", message=packed(test_pb2.Ping(seq=1))),
                        timeout=5)
                    check(False, "uid %d was served without a rule" % os.getuid())
                except grpc.RpcError as e:
                    check(e.code() == grpc.StatusCode.PERMISSION_DENIED
                          and ("uid:%d" % os.getuid()) in e.details(),
                          "own uid: %s %s" % (e.code(), e.details()))
        finally:
            local_gateway.send_signal(signal.SIGTERM)
            local_gateway.wait(10)
        check(not os.path.exists(socket_path), "the socket file was left")

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
            tls_address = read_line(tls_gateway).rsplit(" ", 1)[1]

            def read(name):
                with open(os.path.join(certs, name), "rb") as f:
                    return f.read()

            def find_over_tls(key, chain):
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=read("ca.pem"), private_key=key,
                    certificate_chain=chain)
                with grpc.secure_channel(
                        tls_address, credentials,
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
