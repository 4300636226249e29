"""One module per Redfish resource kind; each exposes short async endpoints for the routes table."""
