"""AccountService (read-only): the BMC's one account and its Administrator role.

The account is the BMC's credentials Secret; it is changed there (kubectl), never over Redfish.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vmbmc.redfish import paths
from vmbmc.redfish.context import service
from vmbmc.redfish.errors import RedfishError
from vmbmc.redfish.resources.base import collection, ok, ref, resource, status

ACCOUNT_ID = "1"
ROLE_ID = "Administrator"
#: DMTF's predefined roles (DSP0266 §13.2.5). The BMC's account is an Administrator; the other two
#: are listed because the specification requires every service to define them.
ROLES = {
    "Administrator": ["Login", "ConfigureManager", "ConfigureUsers", "ConfigureSelf", "ConfigureComponents"],
    "Operator": ["Login", "ConfigureSelf", "ConfigureComponents"],
    "ReadOnly": ["Login", "ConfigureSelf"],
}


async def account_service(request: Request) -> Response:
    body = resource(
        "AccountService", paths.ACCOUNT_SERVICE, "AccountService", "Account Service",
        Description="Read-only: the BMC's one account comes from its credentials Secret",
        ServiceEnabled=True,
        Status=status(),
        Accounts=ref(paths.ACCOUNTS),
        Roles=ref(paths.ROLES),
    )
    return ok(body)


async def accounts(request: Request) -> Response:
    return ok(collection("ManagerAccountCollection", paths.ACCOUNTS, "Accounts Collection",
                         [f"{paths.ACCOUNTS}/{ACCOUNT_ID}"]))


async def account(request: Request) -> Response:
    account_id = request.path_params["account_id"]
    if account_id != ACCOUNT_ID:
        raise RedfishError(404, "ResourceNotFound", "ManagerAccount", account_id)
    body = resource(
        "ManagerAccount", f"{paths.ACCOUNTS}/{ACCOUNT_ID}", ACCOUNT_ID, "BMC account",
        Description="The BMC's account (IPMI and Redfish)",
        UserName=service(request).credentials.username(),
        RoleId=ROLE_ID,
        Enabled=True,
        Locked=False,
        AccountTypes=["Redfish", "IPMI"],
        Links={"Role": ref(f"{paths.ROLES}/{ROLE_ID}")},
    )
    return ok(body)


async def roles(request: Request) -> Response:
    members = [f"{paths.ROLES}/{role_id}" for role_id in ROLES]
    return ok(collection("RoleCollection", paths.ROLES, "Roles Collection", members))


async def role(request: Request) -> Response:
    role_id = request.path_params["role_id"]
    if role_id not in ROLES:
        raise RedfishError(404, "ResourceNotFound", "Role", role_id)
    body = resource(
        "Role", f"{paths.ROLES}/{role_id}", role_id, f"{role_id} role",
        Description=f"DMTF's predefined {role_id} role",
        RoleId=role_id,
        IsPredefined=True,
        AssignedPrivileges=ROLES[role_id],
    )
    return ok(body)
