"""The one exception tracelab raises for a problem the user can act on."""


class LabError(Exception):
    pass
