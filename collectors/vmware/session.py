"""One vCenter session: login with verified TLS, counted round trips, re-login, paged reads.

pyvmomi blocks, so everything here runs in the job's thread. The session and its
ContainerView live as long as the collector instance; a call that meets
NotAuthenticated (the session expired, or vCenter restarted) logs in again once and
retries. A kept connection that vCenter closed (a restart, its proxy's keep-alive limit)
raises SessionClosed, a SessionLost: the agent logs in anew and polls once more, so a
vCenter restart costs no run.
"""

from __future__ import annotations

import http.client
import logging
import ssl
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from agent.collector import SessionLost
from agent.model import ApiCounters
from agent.net.tls import certificate_refusal
from agent.reasons import describe
from collectors.vmware import fastread

log = logging.getLogger(__name__)

API = "vsphere"
PC = vmodl.query.PropertyCollector
PROBE_SHARE = 0.8  # of the job's timeout, for the first request of a login
PROBE_BYTES = 1 << 20  # vimServiceVersions.xml is a few hundred bytes
T = TypeVar("T")
# a kept connection the server had closed, found so before any reply (not a timeout)
CLOSED = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, http.client.RemoteDisconnected,
          ssl.SSLEOFError)


class VMwareError(Exception):
    """A failure to report as one line naming the vCenter and the likely fix."""


class SessionClosed(VMwareError, SessionLost):
    """vCenter closed the connection of a session that served earlier calls, before answering."""


class Session:
    def __init__(self, host: str, port: int, user: str, password: str, ca_file: str | None,
                 verify: bool, timeout: float, api: ApiCounters):
        self.where = f"vCenter {host}:{port}"
        self._verify = verify
        self._login_args = dict(host=host, port=port, user=user, pwd=password,
                                sslContext=_ssl_context(ca_file, verify, self.where),
                                connectionPoolTimeout=timeout, httpConnectionTimeout=timeout)
        self._api = api
        self._probe = (host, port, timeout)
        self.si: Any = None
        self.content: Any = None
        self.view: Any = None
        self.generation = 0  # bumped by every login: caches tied to a session compare it
        self.served = False  # a call was answered: a connection closed later was closed while kept

    def login(self) -> None:
        if not self._verify:
            log.warning("TLS verification is off (insecure_skip_verify): any certificate is accepted where=%s",
                        self.where)
        try:
            self._answers()
            self.si = SmartConnect(**self._login_args)
        except vim.fault.InvalidLogin:
            self._api.request(API, "InvalidLogin")
            raise VMwareError(f"{self.where} refused the login of {self._login_args['user']}: "
                              "check user and password") from None
        except ssl.SSLCertVerificationError as exc:
            self._api.request(API, "tls")
            raise VMwareError(f"{self.where}: {certificate_refusal(exc)}") from None
        except (OSError, http.client.HTTPException) as exc:
            self._api.request(API, "unreachable")
            raise VMwareError(f"cannot reach {self.where}: {describe(exc)}; check host, port and that vCenter "
                              "runs") from None
        self._api.request(API, "ok")
        _count_calls(self.si._stub, self._api)
        self.content = self.si.RetrieveContent()
        self.view = self.content.viewManager.CreateContainerView(
            self.content.rootFolder, [vim.Datacenter, vim.Folder, vim.ComputeResource, vim.HostSystem,
                                      vim.VirtualMachine, vim.Datastore], True)
        self.generation += 1

    def _answers(self) -> None:
        """The request SmartConnect's version discovery makes first, with a timeout: pyvmomi's has
        none, so a vCenter that accepts and never answers would hold the job's thread for ever."""
        host, port, timeout = self._probe
        connection = http.client.HTTPSConnection(host, port, context=self._login_args["sslContext"],
                                                 timeout=timeout * PROBE_SHARE)
        try:
            connection.request("GET", "/sdk/vimServiceVersions.xml")
            connection.getresponse().read(PROBE_BYTES)
        except TimeoutError:
            self._api.request(API, "timeout")
            raise VMwareError(f"{self.where}: no answer within {timeout * PROBE_SHARE:g}s; check that vCenter "
                              "runs and answers HTTPS on that port") from None
        finally:
            connection.close()

    def call(self, work: Callable[[], T]) -> T:
        """Run `work`, logging in again once if the session is gone (expired, or vCenter restarted)."""
        if self.si is None:
            self.login()
        try:
            answer = work()
        except fastread.MalformedReply as exc:
            raise VMwareError(f"{self.where}: {exc}; is this a vCenter or ESXi SDK endpoint?") from None
        except (vim.fault.NotAuthenticated, vmodl.fault.ManagedObjectNotFound) as fault:
            if isinstance(fault, vmodl.fault.ManagedObjectNotFound) and fault.obj != self.view:
                raise
            # our ContainerView unknown: the session it belonged to is gone (vcsim restarted says so)
            log.info("session lost, logging in again where=%s", self.where)
            self.login()
            return work()
        except (OSError, http.client.HTTPException) as exc:
            if self.served and isinstance(exc, CLOSED):  # nothing was answered: the agent polls once more
                raise SessionClosed(f"{self.where} closed the kept connection ({exc})") from None
            raise VMwareError(f"lost {self.where}: {describe(exc)}; check that vCenter runs") from None
        self.served = True
        return answer

    def retrieve(self, prop_specs: list[Any], page: int) -> Iterator[tuple[Any, dict[str, Any]]]:
        """(object, {property path: value}) for every object of the view, `page` per round trip.

        The replies are parsed by collectors/vmware/fastread.py, not by pyvmomi: values
        are light objects with the same attribute names.
        """
        traverse = PC.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
        spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=self.view, skip=True, selectSet=[traverse])],
                             propSet=prop_specs, reportMissingObjectsInResults=False)
        collector, stub = self.content.propertyCollector, self.si._stub
        method, args = "RetrievePropertiesEx", [[spec], PC.RetrieveOptions(maxObjects=page)]
        while True:
            found, token = fastread.objects(stub, self.invoke(collector, method, args))
            yield from found
            if not token:
                return
            method, args = "ContinueRetrievePropertiesEx", [token]

    def invoke(self, mo: Any, method: str, args: list[Any]) -> list[Any]:
        """One counted round trip whose reply fastread parses: its `returnval` elements."""
        try:
            returned = fastread.invoke(self.si._stub, mo, method, args)
        except vmodl.MethodFault as fault:
            self._api.request(API, type(fault).__name__.rsplit(".", 1)[-1])
            raise
        except (OSError, http.client.HTTPException):
            self._api.request(API, "unreachable")
            raise
        self._api.request(API, "ok")
        return returned

    def close(self) -> None:
        if self.si is None:
            return
        try:
            Disconnect(self.si)  # logs out (errors ignored: vCenter may be gone), drops the connections
        except Exception as exc:
            log.debug("disconnect failed where=%s error=%s", self.where, exc)
        self.si = self.content = self.view = None


def _ssl_context(ca_file: str | None, verify: bool, where: str) -> ssl.SSLContext:
    """Verified TLS; a configured ca_file is the only trust anchor, whatever SSL_CERT_FILE says."""
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise VMwareError(f"{where}: cannot use ca_file {ca_file}: {exc}") from None


def _count_calls(stub: Any, api: ApiCounters) -> None:
    """Count every SOAP round trip of the session by its outcome, so a storm of faults shows."""
    invoke = stub.InvokeMethod

    def counted(mo: Any, info: Any, args: Any) -> Any:
        try:
            result = invoke(mo, info, args)
        except vmodl.MethodFault as fault:
            api.request(API, type(fault).__name__.rsplit(".", 1)[-1])
            raise
        except (OSError, http.client.HTTPException):
            api.request(API, "unreachable")
            raise
        api.request(API, "ok")
        return result

    stub.InvokeMethod = counted
