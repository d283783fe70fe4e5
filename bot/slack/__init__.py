"""The Slack surface: listeners, Block Kit, the publisher and every call to Slack (the rules stay in bot/)."""
