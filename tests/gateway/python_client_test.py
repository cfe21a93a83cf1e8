"""A Python grpcio client (stubs from stock protoc) calls every verb of
`courier gateway`, in front of a real node holding echo, adder, sloth and
quitter, and the service shop.Orders that an actor of another node declared
at spawn (the gateway's program knows nothing of it). Run by ctest:
python_client_test.py COURIER TEST_NODE STUBS_DIR."""

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
from google.protobuf import descriptor_pb2  # noqa: E402
from health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # noqa: E402
from shop import orders_pb2, orders_pb2_grpc  # noqa: E402

failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAILED:", what, flush=True)


def packed(msg):
    out = any_pb2.Any()
    out.Pack(msg)
    return out


def eventually(condition, deadline_s=10):
    """Polls `condition` until it holds; False once the deadline passed."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)  # a poll interval, bounded by the deadline
    return True


def reflect(channel, **request):
    """One reflection request on a stream of its own, and its answer."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=5)
    return list(answers)[0]


def serving(channel, service):
    health = health_pb2_grpc.HealthStub(channel)
    try:
        return health.Check(health_pb2.HealthCheckRequest(service=service),
                            timeout=5).status
    except grpc.RpcError:
        return None


def raw_call(channel, path, payload):
    """A unary call by path with raw bytes: its status code."""
    call = channel.unary_unary(path)
    try:
        call(payload, timeout=5)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def start_node(folder, name, *actors):
    """A test node holding `actors`, once it is ready. It stays up while
    its stdin is open."""
    node = subprocess.Popen(
        [test_node, "--dir", folder, "--name", name] + list(actors),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        while read_line(node) != "ready":
            pass
    except RuntimeError:
        node.kill()  # it never became ready: leave nothing behind
        node.wait()
        raise
    return node


def start_gateway(folder, name, *options):
    """`courier gateway` on a port of the loopback, and its address."""
    gateway = subprocess.Popen(
        [courier_cli, "--dir", folder, "--name", name, "gateway", "--listen",
         "127.0.0.1:0"] + list(options), stdout=subprocess.PIPE)
    return gateway, read_line(gateway).rsplit(" ", 1)[1]


def check_actor_services(folder, channel):
    """shop.Orders, declared at spawn by the orders actor of node "shop",
    served by the gateway from the descriptors "shop" publishes."""
    shop = start_node(folder, "shop", "orders")
    ruled = None
    try:
        # Callers of this gateway may find the orders actor, not call it.
        ruled, ruled_address = start_gateway(
            folder, "gw-ruled", "--rule", "anonymous orders find")
        order = orders_pb2.PlaceOrder(item="widget", quantity=2)
        with grpc.insecure_channel(ruled_address) as c:
            for _ in range(3):
                try:
                    orders_pb2_grpc.OrdersStub(c).Place(order, timeout=5)
                    check(False, "the rules let a Place through")
                except grpc.RpcError as e:
                    check(e.code() == grpc.StatusCode.PERMISSION_DENIED
                          and "may not send to 'orders'" in e.details(),
                          "ruled Place: %s %s" % (e.code(), e.details()))

        # The stock stub, unmodified: order-1, so the refused three never
        # reached the actor.
        orders = orders_pb2_grpc.OrdersStub(channel)
        placed = orders.Place(order, timeout=5)
        check(placed.order_id == "order-1" and placed.item == "widget"
              and placed.quantity == 2, "Place: %s" % placed)

        listed = reflect(channel, list_services="*")
        names = {s.name for s in listed.list_services_response.service}
        check({"shop.Orders", "courier.v1.Gateway", "grpc.health.v1.Health",
               "grpc.reflection.v1alpha.ServerReflection"} <= names,
              "reflection lists %s" % sorted(names))
        described = reflect(channel, file_containing_symbol="shop.Orders")
        files = []
        for data in described.file_descriptor_response.file_descriptor_proto:
            f = descriptor_pb2.FileDescriptorProto()
            f.ParseFromString(data)
            files.append(f)
        check(files and files[0].name == "shop/orders.proto"
              and [m.name for m in files[0].service[0].method] == ["Place"],
              "reflection describes shop.Orders: %s" % [f.name for f in files])
        missing = reflect(channel, file_containing_symbol="shop.Nothing")
        check(missing.error_response.error_code
              == grpc.StatusCode.NOT_FOUND.value[0],
              "an unknown symbol: %s" % missing)
        numbers = reflect(channel,
                          all_extension_numbers_of_type="shop.PlaceOrder")
        check(numbers.all_extension_numbers_response.base_type_name
              == "shop.PlaceOrder"
              and not numbers.all_extension_numbers_response.extension_number,
              "extension numbers: %s" % numbers)
        no_extension = reflect(channel, file_containing_extension=(
            reflection_pb2.ExtensionRequest(containing_type="shop.PlaceOrder",
                                            extension_number=100)))
        check(no_extension.error_response.error_code
              == grpc.StatusCode.NOT_FOUND.value[0],
              "an unknown extension: %s" % no_extension)
        # grpc.reflection.v1 (newer tools ask it first): the same messages.
        v1 = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=(
                reflection_pb2.ServerReflectionRequest.SerializeToString),
            response_deserializer=(
                reflection_pb2.ServerReflectionResponse.FromString))
        v1_listed = list(v1(iter([reflection_pb2.ServerReflectionRequest(
            list_services="*")]), timeout=5))
        check(len(v1_listed) == 1 and "shop.Orders" in {
            s.name for s in v1_listed[0].list_services_response.service},
            "reflection v1 lists: %s" % v1_listed)

        check(raw_call(channel, "/shop.Orders/Cancel", b"")
              == grpc.StatusCode.UNIMPLEMENTED, "an unknown method")
        check(raw_call(channel, "/shop.Nothing/Place", b"")
              == grpc.StatusCode.UNIMPLEMENTED, "an unknown service")
        check(raw_call(channel, "/shop.Orders/Place", b"\xff\xff\xff\xff")
              == grpc.StatusCode.INVALID_ARGUMENT, "a garbage request")

        up = health_pb2.HealthCheckResponse.SERVING
        down = health_pb2.HealthCheckResponse.NOT_SERVING
        check(eventually(lambda: serving(channel, "shop.Orders") == up),
              "shop.Orders serving: %s" % serving(channel, "shop.Orders"))
        # An order of nothing stops the actor; its node withdraws the
        # service.
        try:
            orders.Place(orders_pb2.PlaceOrder(item="x", quantity=0),
                         timeout=5)
        except grpc.RpcError:
            pass
        check(eventually(lambda: serving(channel, "shop.Orders") == down),
              "shop.Orders not serving: %s" % serving(channel, "shop.Orders"))
    finally:
        for process in (ruled, shop):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(10)


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
    node = start_node(folder, "peer", "echo.p", "adder", "sloth", "quitter",
                      "counter")
    gateway = None
    try:
        gateway, address = start_gateway(folder, "gw")
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
        downs.initial_metadata()  # sent once the watch is in place
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
        check_actor_services(folder, channel)
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
