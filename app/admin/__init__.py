"""The admin panel: an authenticated htmx web app in its own process.

It reads the engine's databases read-only and changes nothing there: every change is a
control-channel command carrying ``actor="panel:<user>@<ip>"``. Its own small database
(``paneldb``) holds sessions, login throttling and the login audit. The engine never imports this
package.
"""
