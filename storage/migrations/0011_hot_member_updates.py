"""Member and identity rows updated in place (PostgreSQL's HOT updates).

Every callback updates its identity (``last_message_at``) and every activity its member
(``last_active_at``, a sign-in's balance). An update that changes no indexed column, on a
page with room for the new row version, is HOT: no index entry is written. So:

- ``member.last_active_at`` loses its index: every activity update changed an indexed
  column and so wrote an entry into each of the member table's indexes. The segment
  queries and most audiences filter on ``COALESCE(last_active_at, created_at)``, which
  that index could not serve; the ``active`` and ``member_day_active`` audiences
  (``last_active_at >= …``) could use it and now scan the member table, once per SOP
  run (200,000 members: planner cost 2,282 → 5,858), where the index cost every
  callback of every member a write into each index.
- The index is dropped by name, not by tortoise's ``AlterField`` in the database: on
  SQLite that rebuilds the table (``DROP TABLE member`` under foreign keys, which fails
  once other rows reference a member, and the copy loses the other indexes). The model
  state changes as ``AlterField`` says.
- ``member`` and ``identity`` keep 15 % of each page free (``fillfactor = 85``), room for
  the new versions. It applies to pages written from now on; ``VACUUM FULL`` rewrites old
  ones. SQLite has no such setting and updates in place.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.schema_editor.base import BaseSchemaEditor
from tortoise.migrations.schema_generator.state import State
from tortoise.migrations.schema_generator.state_apps import StateApps

_TABLES = ("member", "identity")


async def _fillfactor(value: int, schema_editor: BaseSchemaEditor) -> None:
    if schema_editor.DIALECT != "postgres":
        return
    for table in _TABLES:
        await schema_editor.client.execute_script(
            f'ALTER TABLE "{table}" SET (fillfactor = {value})'
        )


async def _roomy(apps: StateApps, schema_editor: BaseSchemaEditor) -> None:
    await _fillfactor(85, schema_editor)


async def _packed(apps: StateApps, schema_editor: BaseSchemaEditor) -> None:
    if schema_editor.DIALECT != "postgres":
        return
    for table in _TABLES:
        await schema_editor.client.execute_script(f'ALTER TABLE "{table}" RESET (fillfactor)')


_INDEX = "idx_member_last_ac_af6901"  # tortoise's name for the index 0003 created


class _DropIndexOnly(ops.AlterField):
    """``AlterField`` for the model state; in the database only the index goes (or comes
    back), on either dialect, without a table rebuild."""

    async def database_forward(
        self,
        app_label: str,
        old_state: State,
        new_state: State,
        state_editor: BaseSchemaEditor | None = None,
    ) -> None:
        if state_editor is not None:
            await state_editor.client.execute_script(f'DROP INDEX IF EXISTS "{_INDEX}"')

    async def database_backward(
        self,
        app_label: str,
        old_state: State,
        new_state: State,
        state_editor: BaseSchemaEditor | None = None,
    ) -> None:
        if state_editor is not None:
            await state_editor.client.execute_script(
                f'CREATE INDEX IF NOT EXISTS "{_INDEX}" ON "member" ("last_active_at")'
            )


class Migration(migrations.Migration):
    dependencies = [('models', '0010_broadcast_confirmations')]

    initial = False

    operations = [
        _DropIndexOnly(
            model_name='Member',
            name='last_active_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.RunPython(_roomy, _packed),
    ]
