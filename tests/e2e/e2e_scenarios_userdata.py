"""The end-to-end boot of issue 13's user-data output: an EC2 guest whose user-data the user
handed the platform gzip-compressed (as the EC2 console and CLI allow); the fake server serves
those gzip bytes at ``/<version>/user-data`` behind the IMDSv2 token. ``cl-metadata.service`` with
a ``--user-data`` drop-in writes the user's original bytes, inflated, root-only.
"""

from __future__ import annotations

from e2e_results import BootResult, Checks
from e2e_scenarios import (AGENT, EC2_CONSUMER, Scenario, check_multi_user,
                           check_unit_succeeded)

USER_DATA_FILE = "/run/metadata/user-data"
# what the user wrote (an Ignition config, as a Container Linux user would hand over)
USER_DATA = '{"ignition": {"version": "3.4.0"}, "passwd": {"users": [{"name": "core"}]}}\n'
USER_DATA_DROP_IN = f"""\
# An image that hands the user's configuration to a later unit adds the output.
[Service]
ExecStart=
ExecStart=/usr/bin/cl-metadata ${{CL_METADATA_OPT_PROVIDER}} $COREOS_METADATA_OPT_PROVIDER --attributes=/run/metadata/coreos --user-data={USER_DATA_FILE}
"""


def check_user_data(boot: BootResult, ck: Checks, scenario: Scenario) -> None:
    check_unit_succeeded(boot, ck, AGENT)
    item = boot.file(USER_DATA_FILE) or {}
    ck.equal(f"{USER_DATA_FILE}: the user's bytes, inflated", item.get("content"), USER_DATA)
    ck.equal(f"{USER_DATA_FILE}: type, mode, owner", (item.get("type"), item.get("mode"),
                                                      item.get("uid"), item.get("gid")),
             ("file", 0o600, 0, 0))
    fetched = [r for r in boot.requests if r.get("path", "").endswith("/user-data")]
    ck.equal("user-data fetched once, with the IMDSv2 token, answered 200",
             [(r.get("method"), "X-aws-ec2-metadata-token" in r.get("headers", {}),
               r.get("status")) for r in fetched], [("GET", True, 200)])
    ck.check("the user-data never reached the journal",
             "passwd" not in boot.journal_text and "3.4.0" not in boot.journal_text,
             "a piece of the user-data is in guest-journal.txt")
    check_multi_user(boot, ck)


SCENARIOS = [
    Scenario("ec2-user-data-gzip", "issue 13",
             "EC2 user-data served gzip-compressed; --user-data drop-in",
             ["coreos.oem.id=ec2"], check_user_data, platform="ec2", provider="ec2",
             instance_extra={"user-data": USER_DATA, "user-data-gzip": True},
             guest={"units/clmtest-ec2-consumer.service": EC2_CONSUMER,
                    "units/cl-metadata.service.d/50-user-data.conf": USER_DATA_DROP_IN,
                    "links": "multi-user.target.wants clmtest-ec2-consumer.service\n"}),
]
