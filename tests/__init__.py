"""talkies test suite: real Redis, real SQLite, real libraries; nothing of ours mocked."""
