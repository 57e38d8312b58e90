"""A stand-in for the Docker Engine API on a Unix socket, just enough for the Docker plugin: one running
container, its inspect answer, and an event stream that stays open without events. Lets the package test
see the packaged plugin parse real answers (FoundationEssentials' JSON decoder included) without Docker."""
import json
import os
import socket
import threading

CONTAINER_ID = "5f" * 32
CONTAINER_IP = "172.17.0.5"

SUMMARY = [{"Id": CONTAINER_ID, "Names": ["/web"], "State": "running"}]
INSPECT = {
    "Id": CONTAINER_ID,
    "Name": "/web",
    "State": {"Running": True, "Status": "running"},
    "Config": {"Labels": {"app": "web"}},
    "NetworkSettings": {"Networks": {"bridge": {"IPAddress": CONTAINER_IP, "GlobalIPv6Address": ""}}},
}


class FakeDocker:
    def __init__(self, path):
        self.path = path
        self.requests = []
        self.stopping = threading.Event()
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o660)
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
            except OSError:
                return
            path = data.split(b" ", 2)[1].decode()
            self.requests.append(path)
            if path.startswith("/events"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                # No events: the stream stays open until the plugin goes or the test ends.
                while not self.stopping.wait(0.2):
                    pass
                return
            if path.startswith("/containers/json"):
                body = json.dumps(SUMMARY).encode()
            elif path == f"/containers/{CONTAINER_ID}/json":
                body = json.dumps(INSPECT).encode()
            else:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)

    def close(self):
        self.stopping.set()
        self.sock.close()
        self.thread.join(timeout=2)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
