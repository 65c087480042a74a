<?php

declare(strict_types=1);

namespace Tillbridge\PosSync\Test\Unit;

use DOMDocument;
use DOMElement;
use DOMXPath;
use Magento\Framework\Component\ComponentRegistrar;
use PHPUnit\Framework\TestCase;

/**
 * The module's declarations agree with each other: the name in etc/module.xml is the one
 * registration.php registers and the prefix of its ACL resources, the load order puts it after
 * the modules it extends, and composer autoloads its namespace and registration file.
 */
final class ModuleDeclarationTest extends TestCase
{
    private const MODULE_NAME = 'Tillbridge_PosSync';

    private static function moduleDir(): string
    {
        return dirname(__DIR__, 2);
    }

    private static function xpath(string $relativePath): DOMXPath
    {
        $document = new DOMDocument();
        self::assertTrue(
            $document->load(self::moduleDir() . '/' . $relativePath),
            "{$relativePath} is well-formed XML"
        );
        return new DOMXPath($document);
    }

    private static function declaredModule(): DOMElement
    {
        $modules = self::xpath('etc/module.xml')->query('/config/module');
        self::assertNotFalse($modules);
        self::assertCount(1, $modules, 'etc/module.xml declares exactly one module');
        $module = $modules->item(0);
        self::assertInstanceOf(DOMElement::class, $module);
        return $module;
    }

    public function testModuleXmlDeclaresTheModuleAfterTaxSalesAndInventoryApi(): void
    {
        $module = self::declaredModule();
        self::assertSame(self::MODULE_NAME, $module->getAttribute('name'));

        $sequence = [];
        foreach ((new DOMXPath($module->ownerDocument))->query('sequence/module', $module) ?: [] as $dependency) {
            self::assertInstanceOf(DOMElement::class, $dependency);
            $sequence[] = $dependency->getAttribute('name');
        }
        self::assertSame(['Magento_Tax', 'Magento_Sales', 'Magento_InventoryApi'], $sequence);
    }

    public function testRegistrationRegistersTheNameFromModuleXmlAtTheModuleRoot(): void
    {
        require_once self::moduleDir() . '/registration.php';

        $registered = ComponentRegistrar::getPaths(ComponentRegistrar::MODULE);
        self::assertSame([self::declaredModule()->getAttribute('name')], array_keys($registered));
        self::assertSame(
            realpath(self::moduleDir()),
            realpath((string) ComponentRegistrar::getPath(ComponentRegistrar::MODULE, self::MODULE_NAME))
        );
    }

    public function testAclResourcesBelongToTheModule(): void
    {
        $ids = [];
        foreach (self::xpath('etc/acl.xml')->query('//resource/@id') ?: [] as $id) {
            $ids[] = $id->nodeValue;
        }
        $own = array_values(array_filter(
            $ids,
            static fn (?string $id): bool => !str_starts_with((string) $id, 'Magento_')
        ));
        self::assertSame([self::MODULE_NAME . '::config'], $own);
    }

    public function testComposerAutoloadsTheModuleNamespaceAndRegistration(): void
    {
        $composer = json_decode(
            (string) file_get_contents(self::moduleDir() . '/composer.json'),
            true,
            512,
            JSON_THROW_ON_ERROR
        );
        self::assertSame('magento2-module', $composer['type']);
        self::assertSame(['Tillbridge\\PosSync\\' => ''], $composer['autoload']['psr-4']);
        self::assertContains('registration.php', $composer['autoload']['files']);
        foreach (['magento/module-tax', 'magento/module-sales', 'magento/module-inventory-api'] as $package) {
            self::assertArrayHasKey($package, $composer['require'], "composer requires {$package}");
        }
    }
}
