"""SOP engine: scheduled and triggered touchpoints (rules as data).

- ``bot/config_sop.py``: the ``[sop]`` settings and the structure of a rule;
- ``sop.validate``: start-up checks that need the program (audiences, templates);
- ``sop.occurrence``: once-per windows as occurrence keys;
- ``sop.audiences`` (with ``audience_params``, ``audience_sql``, ``audience_channels``,
  ``sql``): named selectors compiled to SQL, paged by id, and the channel split;
- ``sop.claims``: the set-based Touchpoint claim (``INSERT … SELECT … ON CONFLICT DO
  NOTHING``, one statement per page of members);
- ``sop.runs``: SopRun rows (one per SOP and fire time);
- ``sop.engine``: fire a SOP at a fire time, resume a dead runner's run, preview;
- ``sop.dispatch`` (with ``grants``, ``variables``, ``event_touches``): carry out due
  touches — grants once, the marketing policy, the message through the notify service;
- ``sop.leader`` / ``sop.schedule`` / ``sop.catchup`` / ``sop.jobs`` / ``sop.wiring``:
  the scheduling leader, APScheduler, the catch-up walk and the daily jobs.
"""
