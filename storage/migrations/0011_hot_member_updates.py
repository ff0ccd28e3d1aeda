"""Member and identity rows updated in place (PostgreSQL's HOT updates).

Every callback updates its identity (``last_message_at``) and every activity its member
(``last_active_at``, a sign-in's balance). An update that changes no indexed column, on a
page with room for the new row version, is HOT: no index entry is written. So:

- ``member.last_active_at`` loses its index: every activity update changed an indexed
  column and so wrote an entry into each of the member table's indexes. The segment and
  audience queries filter on ``COALESCE(last_active_at, created_at)``, which that index
  could not serve anyway.
- ``member`` and ``identity`` keep 15 % of each page free (``fillfactor = 85``), room for
  the new versions. It applies to pages written from now on; ``VACUUM FULL`` rewrites old
  ones. SQLite has no such setting and updates in place.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.schema_editor.base import BaseSchemaEditor
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
    await _fillfactor(100, schema_editor)


class Migration(migrations.Migration):
    dependencies = [('models', '0010_broadcast_confirmations')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Member',
            name='last_active_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.RunPython(_roomy, _packed),
    ]
