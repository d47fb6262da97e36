# Copyright: coralpi contributors
# Apache License 2.0 (see the coralpi package's metadata)
"""coralpi.coral.plan: this host's plan, made on the controller by coralpi's matrix."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

try:
    from ansible.release import __version__ as ANSIBLE_CORE_VERSION

    from provision.collection import actions
    from provision.errors import CoralpiError
except ImportError as exc:  # the coralpi package is not beside this ansible-core
    actions = None
    IMPORT_ERROR = to_text(exc)
else:
    IMPORT_ERROR = ""


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        if actions is None:
            raise AnsibleActionFail(
                "coralpi.coral.plan needs the coralpi Python package where ansible-playbook "
                "runs (pip install coralpi into the same environment): " + IMPORT_ERROR
            )
        host = task_vars.get("inventory_hostname", "?")
        facts = self._task.args.get("facts")
        try:
            settings = actions.host_settings(host, task_vars, self._templar.template)
            plan = actions.plan_for(host, facts, settings, ANSIBLE_CORE_VERSION)
        except CoralpiError as exc:
            raise AnsibleActionFail(to_text(exc)) from None
        result.update(changed=False, plan=plan.to_dict(), reasons=plan.reasons)
        return result
