"""The API documentation works on a network with no internet access (a hospital's, often)."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import Page, Route, expect

from tests.e2e.gateway import Gateway


def test_swagger_ui_renders_with_no_request_leaving_the_gateway(
    page: Page, gateway: Gateway
) -> None:
    gateway_host = urlsplit(gateway.url).netloc
    elsewhere: list[str] = []

    def only_the_gateway(route: Route) -> None:
        if urlsplit(route.request.url).netloc == gateway_host:
            route.continue_()
        else:  # a CDN, say: not reachable from the wards
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_gateway)
    page.goto(f"{gateway.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("RelayPACS")
    expect(page.get_by_text("/api/v1/uploads/{upload_id}/complete").first).to_be_visible()
    assert elsewhere == []
