"""Göteborgs Stads Åtkomsttjänst (model): a SITHS eID identity provider."""
