import pytest

from pooldrop.domain.roles import PERMISSIONS, Action, GlobalRole, PoolRole, can, parse_pool_role
from pooldrop.errors import ValidationFailed

A, C, L, G = PoolRole.ADMIN, PoolRole.CONTRIBUTOR, PoolRole.LISTENER, PoolRole.AGGREGATOR

# The brief's table, written out independently of the module's.
EXPECTED = {
    Action.POOL_READ: {A, C, L, G},
    Action.POOL_MANAGE: {A},
    Action.UPLOAD_CREATE: {A, C},
    Action.UPLOAD_READ_ALL: {A},
    Action.GROUP_CLOSE: {A, G},
    Action.GROUP_WORK: {A, G},
}


def test_values() -> None:
    assert [str(r) for r in GlobalRole] == ["admin", "user"]
    assert [str(r) for r in PoolRole] == ["admin", "contributor", "listener", "aggregator"]
    assert {str(a) for a in Action} == {
        "pool_read",
        "pool_manage",
        "upload_create",
        "upload_read_all",
        "group_close",
        "group_work",
    }


def test_every_action_is_in_the_table() -> None:
    assert set(PERMISSIONS) == set(Action)


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("role", list(PoolRole))
def test_can(role: PoolRole, action: Action) -> None:
    assert can(role, action) is (role in EXPECTED[action])


def test_admin_can_do_everything() -> None:
    assert all(can(PoolRole.ADMIN, action) for action in Action)


def test_listener_only_reads() -> None:
    assert [a for a in Action if can(PoolRole.LISTENER, a)] == [Action.POOL_READ]


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        PERMISSIONS[Action.POOL_MANAGE] = frozenset(PoolRole)  # type: ignore[index]


@pytest.mark.parametrize("value", list(PoolRole))
def test_parse_pool_role(value: PoolRole) -> None:
    assert parse_pool_role(str(value)) is value


@pytest.mark.parametrize("value", ["owner", "Admin", "", None, 1])
def test_parse_pool_role_rejects(value: object) -> None:
    with pytest.raises(ValidationFailed, match="role must be one of 'admin', 'contributor'"):
        parse_pool_role(value)
