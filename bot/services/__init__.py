"""Domain services: members, identity, points, tiers, sign-in and the rest."""
