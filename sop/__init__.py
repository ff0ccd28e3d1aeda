"""SOP engine: scheduled and triggered touchpoints (rules as data).

- ``bot/config_sop.py``: the ``[sop]`` settings and the structure of a rule;
- ``sop.validate``: start-up checks that need the program (audiences, templates);
- ``sop.occurrence``: once-per windows as occurrence keys;
- ``sop.audiences``: named selectors compiled to SQL, paged by id, and the set-based
  Touchpoint claim (``INSERT … SELECT … ON CONFLICT DO NOTHING``);
- ``sop.runs``: SopRun rows (one per SOP and fire time);
- ``sop.engine``: fire a SOP at a fire time, dispatch due touchpoints, event triggers;
- ``sop.leader`` / ``sop.schedule``: the scheduling leader and APScheduler, catch-up.
"""
