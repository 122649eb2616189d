"""Adapters: run softarray's public functions on other engines' arrays,
reading only what each function declares beside itself
(``softarray._declare``). The top layer: nothing below imports them."""
