"""The registry of every role variable (``<role>_*``), beside the inventory's in
:mod:`provision.planning.variables`.

Each role variable is defined and documented in its role's ``defaults/main.yml``; here it
has its role, its type (Ansible's argument-spec types), its allowed values and where its
default comes from (``origin``):

- ``setting``: a plain default a user may change (``coralpi_apt_cache_valid_time``);
- ``inventory``: follows an inventory variable (``coralpi_camera_allow_reboot`` follows
  ``coralpi_allow_reboot``): set that one instead;
- ``plan``: derived from the host's plan (``coralpi_plan``); setting it overrides the plan
  (for a role used on its own);
- ``derived``: computed from other role variables (``coralpi_apt_proxy_url``): never set.

Every one of them may be set in an inventory or with ``-e``: the inventory check accepts
it when its value fits its type (a Jinja2 template is left to Ansible). Each role's
``meta/argument_specs.yml`` is generated from this table and the defaults' comments
(:mod:`provision.collection.specs`); tests fail when the three disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from provision.errors import ConfigError
from provision.planning.kinds import parse_bool

ORIGINS = ("setting", "inventory", "plan", "derived")
ROLES = (
    "coralpi_mirror",
    "coralpi_apt",
    "coralpi_boot",
    "coralpi_edgetpu",
    "coralpi_pcie",
    "coralpi_python",
    "coralpi_opencv",
    "coralpi_camera",
    "coralpi_record",
    "coralpi_verify",
    "coralpi_pull",
)


@dataclass(frozen=True)
class RoleVariable:
    name: str
    role: str
    #: str, int, bool, list, dict or raw (anything), as in meta/argument_specs.yml.
    type: str
    origin: str
    choices: tuple[str, ...] = ()


ROLE_VARIABLES: tuple[RoleVariable, ...] = (
    RoleVariable("coralpi_mirror_url", "coralpi_mirror", "str", "setting"),
    RoleVariable("coralpi_mirror_files", "coralpi_mirror", "list", "plan"),
    RoleVariable("coralpi_mirror_dir", "coralpi_mirror", "str", "plan"),
    RoleVariable("coralpi_mirror_timeout", "coralpi_mirror", "int", "setting"),
    RoleVariable("coralpi_apt_coral_source_enabled", "coralpi_apt", "bool", "plan"),
    RoleVariable("coralpi_apt_coral_repo_url", "coralpi_apt", "str", "inventory"),
    RoleVariable("coralpi_apt_coral_suite", "coralpi_apt", "str", "setting"),
    RoleVariable("coralpi_apt_coral_components", "coralpi_apt", "list", "setting"),
    RoleVariable("coralpi_apt_coral_keyring_src", "coralpi_apt", "str", "plan"),
    RoleVariable("coralpi_apt_coral_keyring_path", "coralpi_apt", "str", "setting"),
    RoleVariable("coralpi_apt_coral_sources_path", "coralpi_apt", "str", "setting"),
    RoleVariable(
        "coralpi_apt_coral_legacy_sources",
        "coralpi_apt",
        "list",
        "setting",
    ),
    RoleVariable(
        "coralpi_apt_coral_check_dir",
        "coralpi_apt",
        "str",
        "setting",
    ),
    RoleVariable("coralpi_apt_proxy", "coralpi_apt", "str", "setting"),
    RoleVariable("coralpi_apt_proxy_conf_path", "coralpi_apt", "str", "setting"),
    RoleVariable(
        "coralpi_apt_proxy_auth_path",
        "coralpi_apt",
        "str",
        "setting",
    ),
    RoleVariable("coralpi_apt_proxy_userinfo", "coralpi_apt", "str", "derived"),
    RoleVariable("coralpi_apt_proxy_login", "coralpi_apt", "str", "derived"),
    RoleVariable("coralpi_apt_proxy_password", "coralpi_apt", "str", "derived"),
    RoleVariable("coralpi_apt_proxy_url", "coralpi_apt", "str", "derived"),
    RoleVariable("coralpi_apt_proxy_machine", "coralpi_apt", "str", "derived"),
    RoleVariable(
        "coralpi_apt_refused_chars",
        "coralpi_apt",
        "str",
        "setting",
    ),
    RoleVariable("coralpi_apt_cache_valid_time", "coralpi_apt", "int", "setting"),
    RoleVariable("coralpi_apt_lock_timeout", "coralpi_apt", "int", "setting"),
    RoleVariable(
        "coralpi_apt_lock_busy",
        "coralpi_apt",
        "str",
        "setting",
    ),
    RoleVariable("coralpi_boot_plan", "coralpi_boot", "dict", "plan"),
    RoleVariable("coralpi_boot_config_path", "coralpi_boot", "str", "derived"),
    RoleVariable("coralpi_boot_lines", "coralpi_boot", "list", "derived"),
    RoleVariable("coralpi_boot_section", "coralpi_boot", "str", "derived"),
    RoleVariable("coralpi_boot_kernel", "coralpi_boot", "str", "derived"),
    RoleVariable("coralpi_boot_reason", "coralpi_boot", "str", "derived"),
    RoleVariable("coralpi_boot_backup_suffix", "coralpi_boot", "str", "setting"),
    RoleVariable("coralpi_boot_allow_reboot", "coralpi_boot", "bool", "inventory"),
    RoleVariable("coralpi_boot_reboot_timeout", "coralpi_boot", "int", "setting"),
    RoleVariable("coralpi_boot_pending_path", "coralpi_boot", "str", "setting"),
    RoleVariable("coralpi_pcie_plan", "coralpi_pcie", "dict", "plan"),
    RoleVariable("coralpi_pcie_enabled", "coralpi_pcie", "bool", "derived"),
    RoleVariable("coralpi_pcie_headers_packages", "coralpi_pcie", "list", "derived"),
    RoleVariable("coralpi_pcie_driver_package", "coralpi_pcie", "str", "derived"),
    RoleVariable("coralpi_pcie_driver_version", "coralpi_pcie", "str", "derived"),
    RoleVariable("coralpi_pcie_driver_deb", "coralpi_pcie", "str", "plan"),
    RoleVariable("coralpi_pcie_deb_dir", "coralpi_pcie", "str", "setting"),
    RoleVariable("coralpi_pcie_group", "coralpi_pcie", "str", "setting"),
    RoleVariable("coralpi_pcie_udev_rule_path", "coralpi_pcie", "str", "setting"),
    RoleVariable("coralpi_pcie_modules", "coralpi_pcie", "list", "setting"),
    RoleVariable("coralpi_pcie_modules_load_path", "coralpi_pcie", "str", "setting"),
    RoleVariable("coralpi_pcie_dkms_log", "coralpi_pcie", "str", "setting"),
    RoleVariable("coralpi_pcie_build_log", "coralpi_pcie", "str", "setting"),
    RoleVariable("coralpi_pcie_cache_valid_time", "coralpi_pcie", "int", "setting"),
    RoleVariable(
        "coralpi_edgetpu_variant", "coralpi_edgetpu", "str", "plan", choices=("std", "max")
    ),
    RoleVariable(
        "coralpi_edgetpu_source",
        "coralpi_edgetpu",
        "str",
        "plan",
        choices=("coral-apt", "community-deb"),
    ),
    RoleVariable("coralpi_edgetpu_package", "coralpi_edgetpu", "str", "plan"),
    RoleVariable("coralpi_edgetpu_conflicts", "coralpi_edgetpu", "str", "plan"),
    RoleVariable("coralpi_edgetpu_version", "coralpi_edgetpu", "str", "plan"),
    RoleVariable("coralpi_edgetpu_pin_version", "coralpi_edgetpu", "bool", "setting"),
    RoleVariable("coralpi_edgetpu_accept_max_eula", "coralpi_edgetpu", "bool", "inventory"),
    RoleVariable("coralpi_edgetpu_max_questions", "coralpi_edgetpu", "list", "plan"),
    RoleVariable("coralpi_edgetpu_debs", "coralpi_edgetpu", "dict", "plan"),
    RoleVariable("coralpi_edgetpu_deb_dir", "coralpi_edgetpu", "str", "setting"),
    RoleVariable(
        "coralpi_edgetpu_accelerator", "coralpi_edgetpu", "str", "plan", choices=("usb", "pcie")
    ),
    RoleVariable("coralpi_edgetpu_user", "coralpi_edgetpu", "str", "inventory"),
    RoleVariable("coralpi_edgetpu_usb_group", "coralpi_edgetpu", "str", "setting"),
    RoleVariable("coralpi_edgetpu_pcie_group", "coralpi_edgetpu", "str", "setting"),
    RoleVariable("coralpi_edgetpu_groups", "coralpi_edgetpu", "list", "derived"),
    RoleVariable("coralpi_edgetpu_cache_valid_time", "coralpi_edgetpu", "int", "setting"),
    RoleVariable("coralpi_python_apt_packages", "coralpi_python", "list", "plan"),
    RoleVariable("coralpi_python_base_packages", "coralpi_python", "list", "setting"),
    RoleVariable(
        "coralpi_python_venv_path",
        "coralpi_python",
        "str",
        "plan",
    ),
    RoleVariable(
        "coralpi_python_venv_system_site_packages",
        "coralpi_python",
        "bool",
        "plan",
    ),
    RoleVariable("coralpi_python_interpreter", "coralpi_python", "str", "setting"),
    RoleVariable("coralpi_python_requirements", "coralpi_python", "list", "plan"),
    RoleVariable("coralpi_python_wheels_src", "coralpi_python", "str", "plan"),
    RoleVariable("coralpi_python_wheels_dir", "coralpi_python", "str", "setting"),
    RoleVariable("coralpi_python_cache_valid_time", "coralpi_python", "int", "setting"),
    RoleVariable(
        "coralpi_opencv_source",
        "coralpi_opencv",
        "str",
        "plan",
        choices=("apt", "pip"),
    ),
    RoleVariable("coralpi_opencv_package", "coralpi_opencv", "str", "plan"),
    RoleVariable("coralpi_opencv_version", "coralpi_opencv", "str", "plan"),
    RoleVariable(
        "coralpi_opencv_pip_distributions",
        "coralpi_opencv",
        "list",
        "setting",
    ),
    RoleVariable("coralpi_opencv_venv_path", "coralpi_opencv", "str", "plan"),
    RoleVariable("coralpi_opencv_wheels_dir", "coralpi_opencv", "str", "setting"),
    RoleVariable("coralpi_opencv_ld_preload", "coralpi_opencv", "str", "plan"),
    RoleVariable("coralpi_opencv_libatomic_package", "coralpi_opencv", "str", "setting"),
    RoleVariable(
        "coralpi_opencv_preload_pth_name",
        "coralpi_opencv",
        "str",
        "setting",
    ),
    RoleVariable("coralpi_opencv_preload_env_path", "coralpi_opencv", "str", "setting"),
    RoleVariable("coralpi_opencv_preload_systemd_dropin", "coralpi_opencv", "str", "setting"),
    RoleVariable("coralpi_opencv_cache_valid_time", "coralpi_opencv", "int", "setting"),
    RoleVariable(
        "coralpi_camera_method",
        "coralpi_camera",
        "str",
        "plan",
        choices=("raspi-config-legacy", "camera-auto-detect", "none"),
    ),
    RoleVariable("coralpi_camera_config_path", "coralpi_camera", "str", "plan"),
    RoleVariable("coralpi_camera_reason", "coralpi_camera", "str", "plan"),
    RoleVariable("coralpi_camera_gpu_mem", "coralpi_camera", "int", "setting"),
    RoleVariable("coralpi_camera_allow_reboot", "coralpi_camera", "bool", "inventory"),
    RoleVariable("coralpi_camera_pending_path", "coralpi_camera", "str", "setting"),
    RoleVariable("coralpi_camera_reboot_timeout", "coralpi_camera", "int", "setting"),
    RoleVariable(
        "coralpi_record_fact_dir",
        "coralpi_record",
        "str",
        "setting",
    ),
    RoleVariable(
        "coralpi_record_fact_name",
        "coralpi_record",
        "str",
        "setting",
    ),
    RoleVariable("coralpi_record_runtime_package", "coralpi_record", "str", "plan"),
    RoleVariable("coralpi_record_runtime_variant", "coralpi_record", "str", "plan"),
    RoleVariable("coralpi_record_runtime_source", "coralpi_record", "str", "plan"),
    RoleVariable("coralpi_record_runtime_planned_version", "coralpi_record", "str", "plan"),
    RoleVariable("coralpi_record_python_runtime_package", "coralpi_record", "str", "plan"),
    RoleVariable("coralpi_record_python_runtime_version", "coralpi_record", "str", "plan"),
    RoleVariable("coralpi_record_numpy_constraint", "coralpi_record", "str", "plan"),
    RoleVariable("coralpi_record_opencv_source", "coralpi_record", "str", "plan"),
    RoleVariable("coralpi_record_ld_preload", "coralpi_record", "raw", "plan"),
    RoleVariable("coralpi_record_venv", "coralpi_record", "str", "plan"),
    RoleVariable("coralpi_record_camera_method", "coralpi_record", "str", "plan"),
    RoleVariable("coralpi_record_camera_config_path", "coralpi_record", "raw", "plan"),
    RoleVariable("coralpi_record_accelerator", "coralpi_record", "str", "plan"),
    RoleVariable("coralpi_record_coral_key_fingerprints", "coralpi_record", "list", "plan"),
    RoleVariable("coralpi_verify_package_src", "coralpi_verify", "str", "plan"),
    RoleVariable("coralpi_verify_package_archive", "coralpi_verify", "str", "setting"),
    RoleVariable("coralpi_verify_dest", "coralpi_verify", "str", "setting"),
    RoleVariable("coralpi_verify_assets_src", "coralpi_verify", "str", "plan"),
    RoleVariable("coralpi_verify_assets_dir", "coralpi_verify", "str", "setting"),
    RoleVariable("coralpi_verify_venv", "coralpi_verify", "str", "plan"),
    RoleVariable("coralpi_verify_user", "coralpi_verify", "str", "inventory"),
    RoleVariable("coralpi_verify_report_dir", "coralpi_verify", "str", "setting"),
    RoleVariable("coralpi_verify_extra_args", "coralpi_verify", "list", "setting"),
    RoleVariable("coralpi_verify_timeout", "coralpi_verify", "int", "setting"),
    RoleVariable(
        "coralpi_verify_mode", "coralpi_verify", "str", "setting", choices=("run", "firstboot")
    ),
    RoleVariable("coralpi_verify_firstboot_unit", "coralpi_verify", "str", "setting"),
    RoleVariable("coralpi_verify_firstboot_script", "coralpi_verify", "str", "setting"),
    RoleVariable("coralpi_verify_firstboot_done", "coralpi_verify", "str", "setting"),
    RoleVariable("coralpi_verify_firstboot_report_name", "coralpi_verify", "str", "setting"),
    RoleVariable("coralpi_pull_repo_url", "coralpi_pull", "str", "setting"),
    RoleVariable("coralpi_pull_branch", "coralpi_pull", "str", "setting"),
    RoleVariable("coralpi_pull_host", "coralpi_pull", "str", "setting"),
    RoleVariable("coralpi_pull_ansible_venv", "coralpi_pull", "str", "setting"),
    RoleVariable("coralpi_pull_state_dir", "coralpi_pull", "str", "setting"),
    RoleVariable("coralpi_pull_result_path", "coralpi_pull", "str", "setting"),
    RoleVariable("coralpi_pull_boot_delay", "coralpi_pull", "str", "setting"),
    RoleVariable("coralpi_pull_interval", "coralpi_pull", "str", "setting"),
    RoleVariable("coralpi_pull_random_delay", "coralpi_pull", "str", "setting"),
    RoleVariable("coralpi_pull_full_interval", "coralpi_pull", "int", "setting"),
    RoleVariable("coralpi_pull_timeout", "coralpi_pull", "int", "setting"),
    RoleVariable("coralpi_pull_report_url", "coralpi_pull", "str", "setting"),
    RoleVariable("coralpi_pull_unit", "coralpi_pull", "str", "setting"),
    RoleVariable("coralpi_pull_runner_path", "coralpi_pull", "str", "setting"),
    RoleVariable("coralpi_pull_config_path", "coralpi_pull", "str", "setting"),
)

ROLE_BY_NAME: dict[str, RoleVariable] = {v.name: v for v in ROLE_VARIABLES}


def _is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_role_value(variable: RoleVariable, value: object) -> object:
    """``value`` as the role reads it; ConfigError naming the variable when its type or
    choices do not allow it. A Jinja2 template is Ansible's to evaluate (not checked)."""
    name = variable.name
    if _is_template(value):
        return value
    kind = variable.type
    if kind == "bool":
        return parse_bool(name, value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{name}: {value!r} is not a whole number")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name}: {value!r} is not a whole number") from None
    if kind == "list" and not isinstance(value, list):
        raise ConfigError(f"{name}: {value!r} is not a list (write it as a YAML list)")
    if kind == "dict" and not isinstance(value, Mapping):
        raise ConfigError(f"{name}: {value!r} is not a mapping")
    if kind == "str":
        if isinstance(value, list | Mapping) or value is None:
            raise ConfigError(f"{name}: {value!r} is not a string")
        value = str(value)
    if variable.choices and value not in variable.choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(variable.choices)}")
    return value
