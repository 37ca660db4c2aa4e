"""What a process imported, from ``-X importtime`` output (``PYTHONPROFILEIMPORTTIME=1``).

Used to prove that a config-drive run never imports ``requests`` and to show which modules an
HTTP run loads beyond ``python -c "import requests"`` (the start-up cost the agent adds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

HTTP_STACK = ("requests", "urllib3", "charset_normalizer", "chardet", "idna", "certifi")
# Stdlib packages that are costly with what they pull in; the report shows their subtrees.
HEAVY = ("dataclasses", "logging", "argparse", "typing", "concurrent.futures", "socket",
         "json", "signal", "base64", "email.utils", "http.client", "ssl", "urllib3", "requests")


@dataclass(frozen=True)
class ImportProfile:
    self_us: Dict[str, int]  # module -> microseconds spent in the module itself
    cumulative_us: Dict[str, int]  # module -> the same plus the modules it imported first

    @classmethod
    def parse(cls, stderr: str) -> "ImportProfile":
        own, cumulative = {}, {}
        for line in stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            parts = line[len("import time:"):].split("|")
            if len(parts) != 3:
                continue
            try:
                name = parts[2].strip()
                own[name], cumulative[name] = int(parts[0]), int(parts[1])
            except ValueError:
                continue
        return cls(own, cumulative)

    @classmethod
    def median_of(cls, profiles: List["ImportProfile"]) -> "ImportProfile":
        """Per module, the median over several runs (one run can be preempted mid-import).
        A module any run imported is kept (0 µs for the runs that did not)."""
        names = set().union(*(p.self_us for p in profiles))

        def mid(table: str, name: str) -> int:
            values = sorted(getattr(p, table).get(name, 0) for p in profiles)
            return values[len(values) // 2]

        return cls({name: mid("self_us", name) for name in names},
                   {name: mid("cumulative_us", name) for name in names})

    @property
    def total_ms(self) -> float:
        return sum(self.self_us.values()) / 1000

    def imported(self, top_level: str) -> List[str]:
        return sorted(m for m in self.self_us if m == top_level or m.startswith(top_level + "."))

    def http_stack(self) -> List[str]:
        return [m for top in HTTP_STACK for m in self.imported(top)]

    def beyond(self, floor: "ImportProfile") -> List[Tuple[str, int]]:
        """Modules not imported by ``floor``, most expensive first."""
        extra = [(m, us) for m, us in self.self_us.items() if m not in floor.self_us]
        return sorted(extra, key=lambda item: -item[1])

    def heavy_subtrees(self, floor: "ImportProfile") -> List[Tuple[str, int]]:
        """(module, cumulative µs) of the HEAVY modules imported here but not by ``floor``."""
        found = [(m, self.cumulative_us[m]) for m in HEAVY
                 if m in self.cumulative_us and m not in floor.self_us]
        return sorted(found, key=lambda item: -item[1])

    def grouped(self, modules: List[Tuple[str, int]]) -> List[Tuple[str, int, int]]:
        """(top-level package, modules, microseconds) of ``modules``, most expensive first."""
        groups: Dict[str, List[int]] = {}
        for name, us in modules:
            top = name.split(".")[0]
            if top == "cl_metadata":
                top = ".".join(name.split(".")[:2])
            groups.setdefault(top, []).append(us)
        rows = [(top, len(v), sum(v)) for top, v in groups.items()]
        return sorted(rows, key=lambda row: -row[2])
