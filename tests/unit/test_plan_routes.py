"""The routes the planner reads, found without decoding every route and followed from
notifications (``introspect.plan_relevant``, ``introspect.PlanRoutes``)."""

from __future__ import annotations

import socket
import struct

from tna import introspect, netlink
from tna.introspect import PlanRoutes, plan_relevant
from tna.netlink import RTM_DELROUTE, RTM_NEWROUTE, RTMSG, attr

UNICAST, LOCAL = 1, 2
KERNEL, BOOT = 2, 3


def route(dst: str, *, rtm_type: int = UNICAST, protocol: int = BOOT, mtu: int | None = None,
          multipath: bool = False, nhid: int | None = None) -> bytes:
    body = RTMSG.pack(socket.AF_INET, 24, 0, 0, 254, protocol, 0, rtm_type, 0)
    body += attr(introspect.RTA_TABLE, struct.pack("=I", 254))
    body += attr(introspect.RTA_DST, socket.inet_aton(dst))
    if multipath:
        body += attr(introspect.RTA_MULTIPATH, bytes(8))
    else:
        body += attr(introspect.RTA_GATEWAY, socket.inet_aton("10.0.0.1"))
    if nhid is not None:
        body += attr(introspect.RTA_NH_ID, struct.pack("=I", nhid))
    if mtu is not None:
        body += attr(introspect.RTA_METRICS, attr(introspect.RTAX_MTU, struct.pack("=I", mtu)))
    return body


def test_only_the_routes_the_planner_reads_are_relevant() -> None:
    assert not plan_relevant(route("10.1.0.0"))
    assert not plan_relevant(route("10.1.0.0", rtm_type=LOCAL, protocol=KERNEL))
    assert not plan_relevant(route("10.1.0.0", mtu=0))  # an MTU metric of 0 is none
    assert plan_relevant(route("10.1.0.0", rtm_type=LOCAL))  # a local route a user added
    assert plan_relevant(route("10.1.0.0", multipath=True))
    assert plan_relevant(route("10.1.0.0", nhid=7))
    assert plan_relevant(route("10.1.0.0", mtu=1400))
    assert not plan_relevant(b"\0" * 4)  # truncated: not a route at all


def test_followed_routes_change_only_by_what_the_planner_reads() -> None:
    routes = PlanRoutes()
    assert routes.follow(RTM_NEWROUTE, route("10.1.0.0")) == (False, False)
    assert routes.follow(RTM_NEWROUTE, route("10.2.0.0", mtu=1400)) == (True, False)
    assert routes.follow(RTM_NEWROUTE, route("10.2.0.0", mtu=1400)) == (False, False)
    assert [r.mtu for r in routes.current()] == [1400]
    # only the deletion of exactly that route removes it; another one with its prefix leaves
    # it in doubt (stale: to be read again), never gone
    assert routes.follow(RTM_DELROUTE, route("10.9.0.0")) == (False, False)
    assert routes.follow(RTM_DELROUTE, route("10.2.0.0")) == (False, True)
    assert routes.stale and [r.mtu for r in routes.current()] == [1400]
    assert routes.follow(RTM_DELROUTE, route("10.2.0.0", mtu=1400)) == (False, True)
    assert routes.current() == ()


def test_a_full_read_replays_what_arrived_meanwhile() -> None:
    routes = PlanRoutes()
    routes.begin_reload()
    routes.follow(RTM_NEWROUTE, route("10.3.0.0", multipath=True))  # the dump missed it
    routes.follow(RTM_DELROUTE, route("10.4.0.0", nhid=3))  # the dump still saw it
    dumped = [introspect.parse_route(route("10.4.0.0", nhid=3))]
    routes.finish_reload(dumped)
    assert [(r.dst, r.multipath) for r in routes.current()] == [("10.3.0.0", True)]
    assert netlink.RTM_NEWROUTE == 24 and netlink.RTM_DELROUTE == 25


def test_a_deletion_that_may_leave_part_of_a_route_marks_the_set_stale() -> None:
    routes = PlanRoutes()
    routes.follow(RTM_NEWROUTE, route("10.5.0.0", multipath=True))
    # one sibling of an (IPv6-style) ECMP route deleted: what is left is unknown
    assert routes.follow(RTM_DELROUTE, route("10.5.0.0")) == (False, True)
    assert routes.stale and routes.current()  # kept (stricter) until read in full again
    routes.begin_reload()
    routes.finish_reload([])
    assert not routes.stale and routes.current() == ()
    # a link or address deleted: routes may go without a message, if any matters
    assert routes.doubt() is False and not routes.stale
    routes.follow(RTM_NEWROUTE, route("10.6.0.0", mtu=1280))
    assert routes.doubt() is True and routes.stale
