"""Test certificates made with the openssl command: a CA, then leaves it signs for 127.0.0.1."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_tool

_EC = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"


@dataclass(frozen=True)
class Authority:
    """A certificate authority in a directory; `issue()` makes a key and a certificate."""

    directory: Path
    name: str

    @property
    def ca(self) -> Path:
        """Return the CA certificate (PEM)."""
        return self.directory / f"{self.name}-ca.pem"

    def issue(self, leaf: str) -> tuple[Path, Path]:
        """Return (certificate, key) of a new leaf valid for 127.0.0.1 and localhost."""
        cert, key = self.directory / f"{leaf}.pem", self.directory / f"{leaf}.key"
        _openssl(
            f"req -x509 {_EC} -subj /CN={leaf} -CA {self.ca} -CAkey {self.ca.with_suffix('.key')}"
            " -addext subjectAltName=IP:127.0.0.1,DNS:localhost"
            " -addext basicConstraints=critical,CA:FALSE"
            " -addext extendedKeyUsage=serverAuth,clientAuth"
            f" -keyout {key} -out {cert}"
        )
        return cert, key


def authority(directory: Path, name: str) -> Authority:
    """Make a new CA named `name` in a directory."""
    made = Authority(directory, name)
    _openssl(
        f"req -x509 {_EC} -subj /CN={name} -keyout {made.ca.with_suffix('.key')} -out {made.ca}"
    )
    return made


def _openssl(arguments: str) -> None:
    openssl = require_tool("openssl", install="apt-get install openssl")
    subprocess.run([openssl, *arguments.split()], check=True, capture_output=True)
