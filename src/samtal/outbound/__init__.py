"""Work the server does on its own, in the one process that leads the duties: closing idle
calls and purging expired ones (`duties`), and delivering webhooks (`webhooks`)."""
