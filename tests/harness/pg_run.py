"""A throwaway PostgreSQL server for the tests.

initdb into a fresh directory, start postgres on a free loopback port with
SCRAM password logins, print ``PORT <n>`` once it accepts connections, and
stop it and delete the directory when the process that started this exits.
As root, the server runs as the ``postgres`` OS user (initdb refuses root).

With --tls the server only takes TLS connections, with a certificate for
127.0.0.1 and localhost signed by a CA made for this run; the CA's path is
printed after the port: ``PORT <n> CA <path>``. It also listens on 127.0.0.2,
a name the certificate does not hold, for host-name verification tests.

Usage: pg_run.py ADMIN_PASSWORD [--tls]
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def bindir():
    if os.environ.get("AUTOPILOT_PG_BIN"):
        return os.environ["AUTOPILOT_PG_BIN"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    sys.exit("PostgreSQL server binaries not found; run `make setup`")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certificates(root, data, as_user):
    """A CA and a server certificate for 127.0.0.1/localhost; hostssl-only access."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=autopilot test CA",
            "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(root, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    os.chmod(os.path.join(root, "server.key"), 0o600)
    if as_user:
        for name in ("server.key", "server.pem", "ca.pem"):
            shutil.chown(os.path.join(root, name), "postgres", "postgres")
    # Only TLS connections are accepted over TCP; passwords are checked on the socket too.
    with open(os.path.join(data, "pg_hba.conf"), "w") as f:
        f.write("local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n"
                "hostssl all all 127.0.0.2/32 scram-sha-256\n")
    return ["-c", "ssl=on", "-c", f"ssl_cert_file={root}/server.pem", "-c", f"ssl_key_file={root}/server.key"]


def main():
    password = sys.argv[1]
    parent = os.getppid()
    bin_dir = bindir()
    root = tempfile.mkdtemp(prefix="autopilot-pg-")
    data = os.path.join(root, "data")
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    pwfile = os.path.join(root, "pw")
    with open(pwfile, "w") as f:
        f.write(password)
    if as_user:
        shutil.chown(pwfile, "postgres", "postgres")
    subprocess.run(
        as_user + [f"{bin_dir}/initdb", "-D", data, "-U", "postgres", "--auth-host=scram-sha-256",
                   "--auth-local=trust", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    port = free_port()
    tls = "--tls" in sys.argv[2:]
    options = ["-c", "ssl=off", "-c", "listen_addresses=127.0.0.1"]
    if tls:
        options = make_certificates(root, data, as_user) + ["-c", "listen_addresses=127.0.0.1,127.0.0.2"]
    server = subprocess.Popen(
        as_user + [f"{bin_dir}/postgres", "-D", data, "-p", str(port), "-k", root,
                   "-c", "fsync=off"] + options,
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, "log"), "w"),
        # Its own process group, so stopping reaches postgres behind runuser too.
        start_new_session=True,
    )

    def stop(*_):
        try:
            os.killpg(server.pid, signal.SIGINT)
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(root, ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    # Ready means accepting logins, which pg_isready reports (a listening socket is not enough).
    deadline = time.time() + 30
    while subprocess.run([f"{bin_dir}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode != 0:
        if server.poll() is not None or time.time() > deadline:
            sys.stderr.write(open(os.path.join(root, "log")).read())
            stop()
        time.sleep(0.05)
    print(f"PORT {port}" + (f" CA {root}/ca.pem" if tls else ""), flush=True)
    while os.getppid() == parent and server.poll() is None:
        time.sleep(0.5)
    stop()


if __name__ == "__main__":
    main()
