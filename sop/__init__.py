"""SOP engine: scheduled and triggered touchpoints (rules as data)."""
