"""The URIs of the service: one System, one Manager `BMC`, one Chassis `1`."""

ROOT = "/redfish/v1"
SYSTEMS = f"{ROOT}/Systems"
MANAGERS = f"{ROOT}/Managers"
MANAGER = f"{MANAGERS}/BMC"
NETWORK_PROTOCOL = f"{MANAGER}/NetworkProtocol"
CHASSIS_COLLECTION = f"{ROOT}/Chassis"
CHASSIS_ID = "1"
CHASSIS = f"{CHASSIS_COLLECTION}/{CHASSIS_ID}"
ACCOUNT_SERVICE = f"{ROOT}/AccountService"
ACCOUNTS = f"{ACCOUNT_SERVICE}/Accounts"
ROLES = f"{ACCOUNT_SERVICE}/Roles"
SESSION_SERVICE = f"{ROOT}/SessionService"
SESSIONS = f"{SESSION_SERVICE}/Sessions"
REGISTRIES = f"{ROOT}/Registries"
EVENT_SERVICE = f"{ROOT}/EventService"
SUBSCRIPTIONS = f"{EVENT_SERVICE}/Subscriptions"
METADATA = f"{ROOT}/$metadata"
ODATA = f"{ROOT}/odata"


def system(system_id: str) -> str:
    return f"{SYSTEMS}/{system_id}"
