"""The api_extensions this stapesd implements (a subset of Incus 6.0's list, in Incus's order).

Clients switch features on by these names, so only what works end to end is listed."""

API_EXTENSIONS: list[str] = [
    "etag",
    "patch",
    "container_exec_recording",
    "container_exec_signal_handling",
    "entity_description",
    "operation_description",
    "event_lifecycle",
    "container_full",
    "projects",
    "event_location",
    "container_exec_user_group_cwd",
    "instances",
    "image_types",
    "api_filtering",
    "api_os",
    "event_lifecycle_requestor_address",
    "server_supported_storage_drivers",
    "instance_all_projects",
    "instance_get_full",
    "event_project",
    "operation_wait",
    "instance_create_start",
    "instance_state_started_at",
    "event_lifecycle_name_and_project",
]
