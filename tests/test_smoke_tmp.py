def test_start(running):
    r = running.slack.command("start v1.4.2 production")
    print(r.status_code, r.text)
    assert r.status_code == 200
    running.settled()
    posts = running.fake.calls_of("chat.postMessage")
    print(len(posts), [c.args.get("thread_ts") for c in posts])
    assert len(posts) == 4
