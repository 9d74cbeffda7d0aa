-- wrk script: POST a JSON body (set BODY / PATH_ in the environment)
wrk.method = "POST"
wrk.path = os.getenv("WRK_PATH") or "/echo"
wrk.body = os.getenv("WRK_BODY") or '{"message": "hello"}'
wrk.headers["Content-Type"] = "application/json"
