"""The NameNode endpoint: metadata ops answered directly, data ops redirected to a DataNode."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from .errors import RemoteError, bad_param
from .namespace import DEFAULT_REPLICATION, split
from .params import PREFIX, check_valid_name, get_bool, get_int, get_permission
from .transport import Request, WebHdfsHandler

_OPS = {
    "GET": {"OPEN", "GETFILESTATUS", "LISTSTATUS", "GETCONTENTSUMMARY", "GETFILECHECKSUM",
            "GETHOMEDIRECTORY", "GETTRASHROOT"},
    "PUT": {"CREATE", "MKDIRS", "RENAME", "SETPERMISSION", "SETOWNER", "SETREPLICATION", "SETTIMES"},
    "POST": {"APPEND"},
    "DELETE": {"DELETE"},
}
# Real Hadoop ops this emulator does not implement: a clear 400 rather than a wrong answer.
_UNEMULATED = {"CONCAT", "TRUNCATE", "CREATESYMLINK", "GETACLSTATUS", "SETACL", "MODIFYACLENTRIES",
               "REMOVEACLENTRIES", "REMOVEDEFAULTACL", "REMOVEACL", "CREATESNAPSHOT", "DELETESNAPSHOT",
               "RENAMESNAPSHOT", "GETXATTRS", "SETXATTR", "REMOVEXATTR", "LISTXATTRS", "CHECKACCESS",
               "GETDELEGATIONTOKEN", "RENEWDELEGATIONTOKEN", "CANCELDELEGATIONTOKEN", "LISTSTATUS_BATCH",
               "GETSTORAGEPOLICY", "SETSTORAGEPOLICY", "UNSETSTORAGEPOLICY", "GETFILEBLOCKLOCATIONS",
               "GETSERVERDEFAULTS", "GETSNAPSHOTDIFF", "GETSNAPSHOTTABLEDIRECTORYLIST", "ALLOWSNAPSHOT",
               "DISALLOWSNAPSHOT", "SATISFYSTORAGEPOLICY", "GETECPOLICY", "ENABLEECPOLICY"}
# Query parameters the NameNode puts into a redirect itself rather than copying.
_OWN_PARAMS = {"op", "user.name", "doas", "delegation", "noredirect", "namenoderpcaddress"}


def check_op(method: str, op: str) -> None:
    if op in _OPS.get(method, ()):
        return
    if op in _UNEMULATED:
        raise RemoteError("UnsupportedOperationException", f"{op} is not supported by this WebHDFS emulator")
    kind = {"GET": "Get", "PUT": "Put", "POST": "Post", "DELETE": "Delete"}[method]
    raise bad_param("op", f"No enum constant org.apache.hadoop.hdfs.web.resources.{kind}OpParam.Op.{op}")


class NameNodeHandler(WebHdfsHandler):
    def handle_op(self, req: Request) -> None:
        check_op(req.method, req.op)
        if req.op not in ("CREATE", "GETHOMEDIRECTORY", "GETTRASHROOT"):
            check_valid_name(req.path)  # CREATE's step 1 checks nothing about the path (§1.4)
        getattr(self, "op_" + req.op.lower())(req, self.cluster.namespace)

    # -- two-step ops: the NameNode only picks a DataNode ---------------------------------------

    def redirect(self, req: Request) -> None:
        """307 to a DataNode (or 200 ``{"Location":…}`` with ``noredirect=true``)."""
        noredirect = get_bool(req.params, "noredirect", False)
        node = self.cluster.pick_datanode()
        auth = ({"delegation": req.params["delegation"]} if "delegation" in req.params
                else {"user.name": req.user})
        query = {"op": req.op, **auth, "namenoderpcaddress": f"{self.cluster.host}:{self.cluster.namenode_port}"}
        query.update(sorted((k, v) for k, v in req.params.items() if k not in _OWN_PARAMS))
        location = f"{node.url}{PREFIX}{quote(req.path, safe='/')}?{urlencode(query)}"
        if noredirect:
            self.send_json(200, {"Location": location})
        else:
            self.respond(307, headers=[("Location", location)])

    def op_create(self, req, ns):
        # Parameter syntax is checked here (Jersey parses every param); semantics at the DataNode.
        get_bool(req.params, "overwrite", False)
        get_bool(req.params, "createparent", True)
        get_permission(req.params, None)
        for name in ("replication", "blocksize", "buffersize"):
            get_int(req.params, name, None, 1)
        self.redirect(req)

    def op_append(self, req, ns):
        get_int(req.params, "buffersize", None, 1)
        ns.check_file_exists(req.path, req.user)
        self.redirect(req)

    def op_open(self, req, ns):
        offset = get_int(req.params, "offset", 0, 0)
        get_int(req.params, "length", None, 0)
        get_int(req.params, "buffersize", None, 1)
        length = ns.check_file_exists(req.path, req.user).length  # a directory counts as length 0
        if offset >= length > 0:
            raise RemoteError("IOException", f"Offset={offset} out of the range [0, {length}); OPEN, path={req.path}")
        self.redirect(req)

    def op_getfilechecksum(self, req, ns):
        ns.check_file_exists(req.path, req.user)
        self.redirect(req)

    # -- metadata ops ---------------------------------------------------------------------------

    def op_getfilestatus(self, req, ns):
        self.send_json(200, {"FileStatus": ns.get_status(req.path, req.user)})

    def op_liststatus(self, req, ns):
        self.send_json(200, {"FileStatuses": {"FileStatus": ns.list_status(req.path, req.user)}})

    def op_getcontentsummary(self, req, ns):
        self.send_json(200, {"ContentSummary": ns.content_summary(req.path, req.user)})

    def op_gethomedirectory(self, req, ns):
        self.send_json(200, {"Path": f"/user/{req.user}"})

    def op_gettrashroot(self, req, ns):
        self.send_json(200, {"Path": f"/user/{req.user}/.Trash"})

    def op_mkdirs(self, req, ns):
        ns.mkdirs(req.path, req.user, get_permission(req.params, 0o755))
        self.send_json(200, {"boolean": True})

    def op_delete(self, req, ns):
        recursive = get_bool(req.params, "recursive", False)
        self.send_json(200, {"boolean": ns.delete(req.path, req.user, recursive)})

    def op_rename(self, req, ns):
        destination = req.params.get("destination")
        if not destination:
            raise bad_param("destination", "Required param destination for op: RENAME is null or empty")
        if not destination.startswith("/"):
            raise bad_param("destination", f'Invalid parameter value: destination = "{destination}" '
                                           "is not an absolute path.")
        if req.params.get("renameoptions"):
            raise RemoteError("UnsupportedOperationException",
                              "RENAME with renameoptions (rename2) is not supported by this WebHDFS emulator")
        destination = "/" + "/".join(split(destination))
        check_valid_name(destination)
        self.send_json(200, {"boolean": ns.rename(req.path, destination, req.user)})

    def op_setpermission(self, req, ns):
        ns.set_permission(req.path, req.user, get_permission(req.params, 0o755))
        self.respond(200)

    def op_setowner(self, req, ns):
        owner, group = req.params.get("owner") or None, req.params.get("group") or None
        if owner is None and group is None:
            raise bad_param("owner", "Both owner and group are empty.")
        ns.set_owner(req.path, req.user, owner, group)
        self.respond(200)

    def op_setreplication(self, req, ns):
        replication = get_int(req.params, "replication", DEFAULT_REPLICATION, 1)
        self.send_json(200, {"boolean": ns.set_replication(req.path, req.user, replication)})

    def op_settimes(self, req, ns):
        mtime = get_int(req.params, "modificationtime", None, -1)
        atime = get_int(req.params, "accesstime", None, -1)
        ns.set_times(req.path, req.user, mtime, atime)
        self.respond(200)

