//! Two tenants on the same paths never receive each other's responses (property test, on both
//! tiers against the real Redis), whatever the paths, `Vary` values and purges in between.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::sync::OnceLock;

use axum::body::Body;
use common::{cache_status, redis, redis_config, request, text, unique_prefix};
use http::{Request, Response};
use parapet_cache::CacheLayer;
use parapet_tenant::{Tenant, TenantId};
use proptest::prelude::*;
use tower::{Layer, ServiceExt, service_fn};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// An origin whose body names the tenant, path and `Accept-Language` it answered.
fn echo(request: Request<Body>) -> std::future::Ready<Result<Response<Body>, Infallible>> {
    let tenant = request
        .extensions()
        .get::<Tenant>()
        .map_or("none".to_owned(), |t| t.id().to_string());
    let lang = request
        .headers()
        .get("accept-language")
        .map_or("-", |v| v.to_str().unwrap())
        .to_owned();
    let body = format!("{tenant}|{}|{lang}", request.uri());
    std::future::ready(Ok(Response::builder()
        .header("cache-control", "max-age=300")
        .header("vary", "accept-language")
        .body(Body::from(body))
        .unwrap()))
}

#[derive(Debug, Clone)]
enum Op {
    Get {
        tenant: usize,
        path: usize,
        lang: usize,
    },
    Post {
        tenant: usize,
        path: usize,
    },
    PurgeTenant {
        tenant: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..3usize, 0..2usize).prop_map(|(tenant, path, lang)| Op::Get { tenant, path, lang }),
        1 => (0..2usize, 0..3usize).prop_map(|(tenant, path)| Op::Post { tenant, path }),
        1 => (0..2usize).prop_map(|tenant| Op::PurgeTenant { tenant }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn tenants_never_see_each_other(
        tenants in ("[a-z][a-z0-9_-]{0,6}", "[a-z][a-z0-9_-]{0,6}").prop_filter("distinct", |(a, b)| a != b),
        paths in proptest::collection::vec("/[a-z0-9:%/_-]{0,10}(\\?[a-z=&]{0,6})?", 3),
        langs in ("[a-z]{2}", "[a-z]{2}"),
        ops in proptest::collection::vec(op(), 1..30),
    ) {
        let tenants = [tenants.0, tenants.1];
        let langs = [langs.0, langs.1];
        runtime().block_on(async {
            redis().await;
            let cache = CacheLayer::builder()
                .local(1024 * 1024)
                .redis(redis_config())
                .prefix(unique_prefix("tenants"))
                .build()
                .unwrap();
            let service = cache.layer(service_fn(echo));
            // What must be cached: (tenant, path, language) seen since the last purge.
            let mut model = std::collections::HashSet::new();
            for op in &ops {
                match *op {
                    Op::Get { tenant, path, lang } => {
                        let cached = !model.insert((tenant, paths[path].clone(), lang));
                        let uri = &paths[path];
                        let req = request("GET", Some(&tenants[tenant]), uri, &[("accept-language", &langs[lang])]);
                        let response = service.clone().oneshot(req).await.unwrap();
                        let status = cache_status(&response);
                        let body = text(response).await;
                        let expected = format!("{}|{uri}|{}", tenants[tenant], langs[lang]);
                        assert_eq!(body, expected, "{status}");
                        assert_eq!(status.contains("hit"), cached, "{status} for {op:?}");
                    }
                    Op::Post { tenant, path } => {
                        model.retain(|(t, p, _)| !(*t == tenant && *p == paths[path]));
                        let req = request("POST", Some(&tenants[tenant]), &paths[path], &[]);
                        service.clone().oneshot(req).await.unwrap();
                    }
                    Op::PurgeTenant { tenant } => {
                        model.retain(|(t, _, _)| *t != tenant);
                        let id = TenantId::parse(&tenants[tenant]).unwrap();
                        cache.handle().purge_tenant(Some(&id)).await;
                    }
                }
            }
        });
    }
}
