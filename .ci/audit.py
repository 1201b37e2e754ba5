"""Supply-chain check for `make lint`: pip-audit over the installed environment.

Fails on any known vulnerability that .ci/audit-ignore.txt does not justify. When the vulnerability
service cannot be reached (an offline machine), says so loudly and names how many packages went
unaudited, instead of reporting a clean bill of health it does not have.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

IGNORE = Path(__file__).with_name("audit-ignore.txt")


def ignored() -> dict[str, str]:
    """Vulnerability ids that are accepted, with the reason written next to each."""
    out = {}
    for line in IGNORE.read_text().splitlines() if IGNORE.exists() else []:
        vuln, _, reason = line.partition(" ")
        if vuln and not vuln.startswith("#"):
            out[vuln] = reason.strip()
    return out


def main() -> int:
    """Run pip-audit; exit 1 on an unjustified vulnerability."""
    args = [sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off"]
    for vuln in ignored():
        args += ["--ignore-vuln", vuln]
    done = subprocess.run(args, capture_output=True, text=True)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        print(done.stderr[-2000:], file=sys.stderr)
        return 1
    deps = report.get("dependencies", [])
    vulnerable = [d for d in deps if d.get("vulns")]
    unaudited = [d for d in deps if d.get("skip_reason")]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            print(f"VULNERABLE {dep['name']} {dep['version']}: {vuln['id']} (fixed in "
                  f"{', '.join(vuln.get('fix_versions') or ['?'])})")
    if unaudited:
        print(f"WARNING: {len(unaudited)} of {len(deps)} packages could not be audited "
              f"({unaudited[0].get('skip_reason')}); the vulnerability service is probably unreachable "
              "from this machine: run `make lint` where PyPI's JSON API answers.")
    print(f"pip-audit: {len(deps) - len(unaudited)} packages audited, {len(vulnerable)} vulnerable")
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
